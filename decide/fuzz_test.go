package decide

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

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
// name are sane, or is refused with a *MetadataError naming a key.
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
		"workload=pynode\norg=acme\nscalerAddress=" + strings.Repeat("x", MaxMetadataValue+1),
		"workload=pynode\norg=acme" + strings.Repeat("\nmetricType=AverageValue", 3),
	} {
		f.Add(seed)
	}
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseMetadata(metadataOf(s))
		if err != nil {
			var me *MetadataError
			if !errors.As(err, &me) || (me.Key == "" && !me.Unknown) || !strings.Contains(err.Error(), fmt.Sprintf("%q", me.Key)) {
				t.Fatalf("refusal without a named key: %v", err)
			}
			if len(err.Error()) > 2000 {
				t.Fatalf("error of %d bytes: values must be clipped", len(err.Error()))
			}
			return
		}
		md := metadataOf(s)
		if len(md) > MaxMetadataKeys {
			t.Fatalf("accepted %d keys", len(md))
		}
		for k, v := range md {
			if len(k) > MaxMetadataValue || len(v) > MaxMetadataPEMValue || (!pemKeys[k] && len(v) > MaxMetadataValue) {
				t.Fatalf("accepted key %q with a value of %d bytes", Clip(k), len(v))
			}
		}
		if w.Kind != KindPynode && w.Kind != KindModel && w.Kind != KindWorker {
			t.Fatalf("kind %q", w.Kind)
		}
		if w.Org != "" && !ValidOrg(w.Org) || w.Subscription != "" && !ValidSubscription(w.Subscription) {
			t.Fatalf("accepted an invalid org or subscription: %+v", w)
		}
		name := w.MetricName()
		if len(name) > 200 || strings.ToLower(name) != name || strings.ContainsAny(name, " /_.:") {
			t.Fatalf("metric name %q is not a valid Kubernetes metric name", name)
		}
		for _, b := range []Backlog{{}, {Known: true, Messages: 1 << 62, ObservedAt: now}} {
			a := Decide(w, OrgState{LastActivity: now.Add(-time.Hour), ScaleToZeroAllowed: true, IdleWindow: 24 * time.Hour}, b, now)
			if a.Replicas < 0 || (a.Active && a.Replicas < 1 && !a.Blind() && a.Rule != RuleBlind) || a.Reason() == "" {
				t.Fatalf("answer %+v (%s) for %+v", a, a.Reason(), w)
			}
		}
	})
}

// orgPattern is ValidOrg's rule as a regexp, to check the loop against.
var orgPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func FuzzValidOrg(f *testing.F) {
	for _, s := range []string{"acme", "", "a b", strings.Repeat("a", 128), strings.Repeat("a", 129), "acme:eu-1.x_y", "ü", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidOrg(s) != orgPattern.MatchString(s) {
			t.Fatalf("ValidOrg(%q) = %v, the rule says %v", s, ValidOrg(s), !ValidOrg(s))
		}
	})
}
