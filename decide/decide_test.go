package decide

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	pynode := Workload{Kind: KindPynode, Org: "acme", MessagesPerReplica: 1}
	model1h := Workload{Kind: KindModel, Org: "acme", MessagesPerReplica: 1, WarmFor: time.Hour}
	modelSub := Workload{Kind: KindModel, Org: "acme", Subscription: "projects/p-1234/subscriptions/jobs", MessagesPerReplica: 10, ActivationBacklog: 5}
	worker := Workload{Kind: KindWorker, Subscription: "projects/p-1234/subscriptions/jobs", MessagesPerReplica: 4}
	orgWorker := Workload{Kind: KindWorker, Org: "acme", Subscription: "projects/p-1234/subscriptions/jobs", MessagesPerReplica: 4}
	orgWorkerWarm := orgWorker
	orgWorkerWarm.WarmFor = 30 * time.Minute
	org := func(ago time.Duration) OrgState {
		return OrgState{LastActivity: t0.Add(-ago), ScaleToZeroAllowed: true, IdleWindow: 24 * time.Hour}
	}
	vip := OrgState{LastActivity: t0.Add(-1000 * time.Hour), ScaleToZeroAllowed: false, IdleWindow: 24 * time.Hour}
	backlog := func(n int64) Backlog { return Backlog{Known: true, Messages: n, ObservedAt: t0} }

	tests := []struct {
		name       string
		w          Workload
		org        OrgState
		b          Backlog
		active     bool
		replicas   int64
		rule       Rule
		nextChange time.Time
	}{
		{"pynode just active", pynode, org(0), Backlog{}, true, 1, RuleWarm, t0.Add(24 * time.Hour)},
		{"pynode 1ns before window ends", pynode, org(24*time.Hour - 1), Backlog{}, true, 1, RuleWarm, t0.Add(1)},
		{"pynode at window end", pynode, org(24 * time.Hour), Backlog{}, false, 0, RuleIdle, time.Time{}},
		{"scale to zero off", pynode, vip, Backlog{}, true, 1, RuleScaleToZeroOff, time.Time{}},
		{"warmFor shorter than org window: cold", model1h, org(2 * time.Hour), Backlog{}, false, 0, RuleIdle, time.Time{}},
		{"warmFor shorter than org window: warm", model1h, org(30 * time.Minute), Backlog{}, true, 1, RuleWarm, t0.Add(30 * time.Minute)},
		{"warmFor with scale to zero off", model1h, vip, Backlog{}, true, 1, RuleScaleToZeroOff, time.Time{}},
		{"model cold, backlog at activation", modelSub, org(48 * time.Hour), backlog(5), false, 0, RuleIdle, time.Time{}},
		{"model cold, backlog above activation", modelSub, org(48 * time.Hour), backlog(25), true, 3, RuleBacklog, time.Time{}},
		{"model warm and backlog", modelSub, org(time.Hour), backlog(25), true, 3, RuleWarm, time.Time{}},
		{"model warm, small backlog ends with window", modelSub, org(time.Hour), backlog(3), true, 1, RuleWarm, t0.Add(23 * time.Hour)},
		{"model blind", modelSub, org(time.Hour), Backlog{}, true, 0, RuleBlind, time.Time{}},
		{"worker empty", worker, OrgState{}, backlog(0), false, 0, RuleNoBacklog, time.Time{}},
		{"worker one message", worker, OrgState{}, backlog(1), true, 1, RuleBacklog, time.Time{}},
		{"worker 9 messages, 4 per replica", worker, OrgState{}, backlog(9), true, 3, RuleBacklog, time.Time{}},
		{"worker blind", worker, OrgState{}, Backlog{}, false, 0, RuleBlind, time.Time{}},
		{"org worker not warmed by org activity", orgWorker, org(0), backlog(0), false, 0, RuleNoBacklog, time.Time{}},
		{"org worker on backlog", orgWorker, org(0), backlog(8), true, 2, RuleBacklog, time.Time{}},
		{"org worker with warmFor", orgWorkerWarm, org(10 * time.Minute), backlog(0), true, 1, RuleWarm, t0.Add(20 * time.Minute)},
		{"org worker, scale to zero off", orgWorker, vip, backlog(0), true, 1, RuleScaleToZeroOff, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Decide(tt.w, tt.org, tt.b, t0)
			if a.Active != tt.active || a.Replicas != tt.replicas || a.Rule != tt.rule || !a.NextChange.Equal(tt.nextChange) {
				t.Fatalf("got active=%v replicas=%d rule=%s next=%v (%s); want active=%v replicas=%d rule=%s next=%v",
					a.Active, a.Replicas, a.Rule, a.NextChange, a.Reason(), tt.active, tt.replicas, tt.rule, tt.nextChange)
			}
			if a.Reason() == "" {
				t.Fatal("every answer needs a reason")
			}
		})
	}
}

func TestParseMetadata(t *testing.T) {
	w, err := ParseMetadata(map[string]string{
		"workload": "model", "org": "acme:eu-1", "warmFor": "1h", "scalerAddress": "scaler:9090", "enableTLS": "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Workload{Kind: KindModel, Org: "acme:eu-1", MessagesPerReplica: 1, WarmFor: time.Hour, GPUsPerReplica: 1}
	if w != want {
		t.Fatalf("got %+v, want %+v", w, want)
	}
	w, err = ParseMetadata(map[string]string{
		"workload": "worker", "subscription": "projects/my-proj/subscriptions/gpu-jobs", "messagesPerReplica": "5", "activationBacklog": "2",
		"gpusPerReplica": "8",
	})
	if err != nil {
		t.Fatal(err)
	}
	if w.Org != "" || w.MessagesPerReplica != 5 || w.ActivationBacklog != 2 || w.GPUsPerReplica != 8 {
		t.Fatalf("worker: got %+v", w)
	}
}

func TestParseMetadataErrors(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		md   map[string]string
		key  string
		want string // part of the message
	}{
		{"no workload", map[string]string{"org": "acme"}, "workload", "missing"},
		{"bad workload", map[string]string{"workload": "gpu"}, "workload", `"gpu"`},
		{"pynode without org", map[string]string{"workload": "pynode"}, "org", "missing"},
		{"model without org", map[string]string{"workload": "model"}, "org", "missing"},
		{"org with space", map[string]string{"workload": "pynode", "org": "ac me"}, "org", `"ac me"`},
		{"org too long", map[string]string{"workload": "pynode", "org": long}, "org", "1 to 128"},
		{"org empty", map[string]string{"workload": "pynode", "org": ""}, "org", "missing"},
		{"worker without subscription", map[string]string{"workload": "worker"}, "subscription", "missing"},
		{"bad subscription", map[string]string{"workload": "worker", "subscription": "jobs"}, "subscription", "projects/PROJECT/subscriptions/SUBSCRIPTION"},
		{"pynode with subscription", map[string]string{"workload": "pynode", "org": "a", "subscription": "projects/my-proj/subscriptions/jobs"}, "subscription", "pynode"},
		{"messagesPerReplica zero", map[string]string{"workload": "pynode", "org": "a", "messagesPerReplica": "0"}, "messagesPerReplica", ">= 1"},
		{"messagesPerReplica text", map[string]string{"workload": "pynode", "org": "a", "messagesPerReplica": "ten"}, "messagesPerReplica", `"ten"`},
		{"activationBacklog negative", map[string]string{"workload": "pynode", "org": "a", "activationBacklog": "-1"}, "activationBacklog", ">= 0"},
		{"warmFor bad", map[string]string{"workload": "model", "org": "a", "warmFor": "1 hour"}, "warmFor", "Go duration"},
		{"warmFor zero", map[string]string{"workload": "model", "org": "a", "warmFor": "0s"}, "warmFor", "greater than zero"},
		{"warmFor negative", map[string]string{"workload": "model", "org": "a", "warmFor": "-1h"}, "warmFor", "greater than zero"},
		{"warmFor without org", map[string]string{"workload": "worker", "subscription": "projects/my-proj/subscriptions/jobs", "warmFor": "1h"}, "warmFor", "org"},
		{"gpusPerReplica negative", map[string]string{"workload": "pynode", "org": "a", "gpusPerReplica": "-1"}, "gpusPerReplica", ">= 0"},
		{"gpusPerReplica huge", map[string]string{"workload": "pynode", "org": "a", "gpusPerReplica": "5000"}, "gpusPerReplica", "0 to 1024"},
		{"typo key", map[string]string{"workload": "pynode", "org": "a", "warmfor": "1h"}, "warmfor", "is not a known key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMetadata(tt.md)
			var me *MetadataError
			if !errors.As(err, &me) {
				t.Fatalf("want *MetadataError, got %v", err)
			}
			if me.Key != tt.key || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"`+tt.key+`"`) {
				t.Fatalf("want key %q and %q in the message, got key %q: %v", tt.key, tt.want, me.Key, err)
			}
		})
	}
}

func TestMetricNameStableAndUnique(t *testing.T) {
	a := Workload{Kind: KindPynode, Org: "Acme", MessagesPerReplica: 1}
	b := Workload{Kind: KindPynode, Org: "acme", MessagesPerReplica: 1}
	c := Workload{Kind: KindModel, Org: "acme", MessagesPerReplica: 1, WarmFor: time.Hour}
	// The name is in every HPA KEDA built: it must never change between
	// versions for the same metadata.
	if got := b.MetricName(); got != "pynode-acme-c39d5ca7" {
		t.Fatalf("metric name changed: %q", got)
	}
	seen := map[string]bool{}
	for _, w := range []Workload{a, b, c} {
		n := w.MetricName()
		if seen[n] {
			t.Fatalf("metric name %q shared by two workloads", n)
		}
		seen[n] = true
		for _, r := range n {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Fatalf("metric name %q has %q: want lowercase letters, digits and '-'", n, r)
			}
		}
	}
	if !strings.HasPrefix(b.MetricName(), "pynode-acme-") {
		t.Fatalf("metric name should read as the workload: %q", b.MetricName())
	}
}

// The name's hash input is written without fmt; it must stay byte for byte
// what fmt wrote, or every HPA KEDA built would lose its metric.
func TestMetricNameHashUnchanged(t *testing.T) {
	for _, w := range []Workload{
		{Kind: KindPynode, Org: "acme", MessagesPerReplica: 1},
		{Kind: KindModel, Org: "Acme:EU_1", MessagesPerReplica: 1, WarmFor: 90 * time.Minute, Subscription: "projects/p/subscriptions/x"},
		{Kind: KindWorker, Subscription: "projects/my-proj/subscriptions/gpu-jobs", MessagesPerReplica: 5, ActivationBacklog: 2},
	} {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%d\x00%d", w.Kind, w.Org, w.Subscription, w.MessagesPerReplica, w.ActivationBacklog, w.WarmFor)
		if want := fmt.Sprintf("-%08x", h.Sum32()); !strings.HasSuffix(w.MetricName(), want) {
			t.Errorf("%+v: name %s, want the hash %s", w, w.MetricName(), want)
		}
	}
}

// Blind keeps the last answer; with none, there is no answer.
func TestHold(t *testing.T) {
	w := Workload{Kind: KindWorker, Subscription: "projects/p/subscriptions/s", MessagesPerReplica: 1}
	blind := Decide(w, OrgState{}, Backlog{}, time.Unix(100, 0))
	seen := Decide(w, OrgState{}, Backlog{Known: true, Messages: 3}, time.Unix(100, 0))
	for _, c := range []struct {
		name             string
		a                Answer
		last, hasLast    bool
		wantActive, okay bool
	}{
		{"blind, last active", blind, true, true, true, true},
		{"blind, last inactive", blind, false, true, false, true},
		{"blind, nothing said yet", blind, false, false, false, false},
		{"seen overrides the last", seen, false, true, true, true},
	} {
		if active, ok := Hold(c.a, c.last, c.hasLast); active != c.wantActive || ok != c.okay {
			t.Errorf("%s: got active=%v ok=%v, want %v %v", c.name, active, ok, c.wantActive, c.okay)
		}
	}
}

// Metadata is bounded: a value past 1 KiB, or more than 64 keys, is
// refused naming the key.
func TestMetadataBounds(t *testing.T) {
	md := map[string]string{"workload": "pynode", "org": "acme", "scalerAddress": strings.Repeat("x", MaxMetadataValue+1)}
	_, err := ParseMetadata(md)
	var me *MetadataError
	if !errors.As(err, &me) || me.Key != "scalerAddress" || !strings.Contains(err.Error(), "at most 1024 bytes") {
		t.Fatalf("a 1025-byte value: want an error naming scalerAddress and the bound, got %v", err)
	}
	md = map[string]string{"workload": "pynode", "org": "acme"}
	for i := range MaxMetadataKeys {
		md[fmt.Sprintf("k%02d", i)] = "v"
	}
	if _, err := ParseMetadata(md); !errors.As(err, &me) || !strings.Contains(err.Error(), "at most 64 metadata keys, got 66") {
		t.Fatalf("66 keys: want a refusal naming the bound, got %v", err)
	}
	pem := map[string]string{"workload": "pynode", "org": "acme", "caCert": strings.Repeat("A", 4000)}
	if _, err := ParseMetadata(pem); err != nil {
		t.Fatalf("a 4 KB PEM in caCert is KEDA's and allowed: %v", err)
	}
}
