package trigger_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/orgid"
	"github.com/orgscaler/orgscaler/trigger"
)

// pem are the keys whose values may hold PEM certificates.
var pem = map[string]bool{"caCert": true, "tlsClientCert": true, "tlsClientKey": true}

// metadataOf reads KEY=VALUE lines, so the fuzzer can build any map.
func metadataOf(s string) map[string]string {
	md := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(line, "=")
		md[k] = v
	}
	return md
}

// Any metadata either parses into a workload whose answers and metric
// name are sane, or is refused with a *trigger.MetadataError naming a key.
func FuzzParseMetadata(f *testing.F) {
	for _, seed := range []string{
		"workload=pynode\norg=acme",
		"workload=model\norg=acme:eu-1\nwarmFor=1h\ngpusPerReplica=8",
		"workload=worker\nsubscription=projects/p/subscriptions/jobs\nmessagesPerReplica=5\nactivationBacklog=2",
		"workload=worker\norg=acme\nsubscription=projects/p/subscriptions/jobs\nwarmFor=30m",
		"workload=pynode\norg=a\nwarmfor=1h",
		"workload=model\norg=\nwarmFor=-1h",
		"workload=worker\nsubscription=projects/P/subscriptions/x",
		"workload=pynode\norg=a\ngpusPerReplica=99999999999999999999",
		"scalerAddress=x:1\nenableTLS=true\nworkload=pynode\norg=ü",
		"workload=pynode\norg=acme\nscalerAddress=" + strings.Repeat("x", trigger.MaxMetadataValue+1),
		"workload=pynode\norg=acme" + strings.Repeat("\nmetricType=AverageValue", 3),
	} {
		f.Add(seed)
	}
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		w, err := trigger.ParseMetadata(metadataOf(s))
		if err != nil {
			var me *trigger.MetadataError
			if !errors.As(err, &me) || (me.Key == "" && !me.Unknown) || !strings.Contains(err.Error(), fmt.Sprintf("%q", me.Key)) {
				t.Fatalf("refusal without a named key: %v", err)
			}
			if len(err.Error()) > 2000 {
				t.Fatalf("error of %d bytes: values must be clipped", len(err.Error()))
			}
			return
		}
		md := metadataOf(s)
		if len(md) > trigger.MaxMetadataKeys {
			t.Fatalf("accepted %d keys", len(md))
		}
		for k, v := range md {
			if len(k) > trigger.MaxMetadataValue || len(v) > trigger.MaxMetadataPEMValue || (!pem[k] && len(v) > trigger.MaxMetadataValue) {
				t.Fatalf("accepted key %q with a value of %d bytes", trigger.Clip(k), len(v))
			}
		}
		if w.Kind != trigger.KindPynode && w.Kind != trigger.KindModel && w.Kind != trigger.KindWorker {
			t.Fatalf("kind %q", w.Kind)
		}
		if w.Org != "" && !orgid.Valid(w.Org) || w.Subscription != "" && !trigger.ValidSubscription(w.Subscription) {
			t.Fatalf("accepted an invalid org or subscription: %+v", w)
		}
		name := w.MetricName()
		if len(name) > 200 || strings.ToLower(name) != name || strings.ContainsAny(name, " /_.:") {
			t.Fatalf("metric name %q is not a valid Kubernetes metric name", name)
		}
		for _, b := range []decide.Backlog{{}, {Known: true, Messages: 1 << 62, ObservedAt: now}} {
			a := decide.Decide(w, decide.OrgState{LastActivity: now.Add(-time.Hour), ScaleToZeroAllowed: true, IdleWindow: 24 * time.Hour}, b, now)
			if a.Replicas < 0 || (a.Active && a.Replicas < 1 && !a.Blind() && a.Rule != decide.RuleBlind) || a.Reason() == "" {
				t.Fatalf("answer %+v (%s) for %+v", a, a.Reason(), w)
			}
		}
	})
}
