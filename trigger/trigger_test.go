package trigger

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"
)

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

func TestParseKeepAliveErrors(t *testing.T) {
	for _, c := range []struct {
		md  map[string]string
		key string
	}{
		{map[string]string{"workload": "model", "org": "a", "keepAlive": "learned"}, "coldStart"},
		{map[string]string{"workload": "model", "org": "a", "coldStart": "3m"}, "coldStart"},
		{map[string]string{"workload": "model", "org": "a", "keepAlive": "fixed:1h", "coldStart": "3m"}, "keepAlive"},
		{map[string]string{"workload": "model", "org": "a", "keepAlive": "learned:-1m", "coldStart": "3m"}, "keepAlive"},
		{map[string]string{"workload": "model", "org": "a", "keepAlive": "learned", "coldStart": "3m", "warmFor": "1h"}, "keepAlive"},
		{map[string]string{"workload": "model", "org": "a", "keepAlive": "learned", "coldStart": "0s"}, "coldStart"},
		{map[string]string{"workload": "model", "org": "a", "keepAlive": "learned", "coldStart": "3m", "minWarm": "5h"}, "minWarm"},
		{map[string]string{"workload": "worker", "subscription": "projects/p-1234/subscriptions/jobs", "keepAlive": "hybrid", "coldStart": "3m"}, "keepAlive"},
	} {
		_, err := ParseMetadata(c.md)
		var me *MetadataError
		if !errors.As(err, &me) || me.Key != c.key {
			t.Errorf("%v: got %v; want an error naming %q", c.md, err, c.key)
		}
	}
	w, err := ParseMetadata(map[string]string{"workload": "worker", "org": "a", "subscription": "projects/p-1234/subscriptions/jobs",
		"keepAlive": "learned:20m", "coldStart": "2m", "minWarm": "0s"})
	if err != nil || w.KeepAlive != (KeepAlive{Policy: "learned:20m", ColdStart: 2 * time.Minute}) {
		t.Fatalf("an org worker with its own price and no floor: %+v %v", w.KeepAlive, err)
	}
}
