package kubeevents

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// objects is the cluster these tests have: ScaledObjects by the org their
// triggers name (model-acme has two triggers naming acme).
func objects(org string) []types.NamespacedName {
	return map[string][]types.NamespacedName{
		"acme":  {{Namespace: "ml", Name: "pynode-acme"}, {Namespace: "ml", Name: "model-acme"}, {Namespace: "ml", Name: "model-acme"}},
		"other": {{Namespace: "ml", Name: "pynode-other"}},
	}[org]
}

func newTestRecorder(t *testing.T) *Recorder {
	t.Helper()
	// Nothing is sent: these tests read the queue the background loop
	// would drain.
	r, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, slog.New(slog.DiscardHandler), objects)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func drain(r *Recorder) []item {
	var out []item
	for {
		select {
		case it := <-r.queue:
			out = append(out, it)
		default:
			return out
		}
	}
}

func reasons(items []item) string {
	var s []string
	for _, it := range items {
		s = append(s, it.to.name+":"+it.reason)
	}
	return strings.Join(s, " ")
}

// An Event when the answer changes, none while it stays the same.
func TestAnswerTransitions(t *testing.T) {
	r := newTestRecorder(t)
	steps := []struct {
		active, blind bool
		want          string
	}{
		{true, false, "pynode:ScalerActive"},
		{true, false, ""},
		{false, false, "pynode:ScalerInactive"},
		{false, false, ""},
		{false, true, "pynode:BacklogUnknown"},
		{false, true, ""},
		{false, false, "pynode:ScalerInactive"},
		{true, false, "pynode:ScalerActive"},
	}
	for i, s := range steps {
		r.Answered("ml", "pynode", s.active, s.blind, func() string { return "why" })
		if got := reasons(drain(r)); got != s.want {
			t.Fatalf("step %d: want %q, got %q", i, s.want, got)
		}
	}
}

// Org transitions go to every ScaledObject whose triggers name the org,
// once each, whether or not KEDA has asked about it yet.
func TestOrgTransitionsReachEveryScaledObject(t *testing.T) {
	r := newTestRecorder(t)
	r.OrgWoke("acme", "activity", time.Now().Add(-time.Hour))
	got := drain(r)
	if len(got) != 2 || !strings.Contains(reasons(got), "pynode-acme:OrgWoke") || !strings.Contains(reasons(got), "model-acme:OrgWoke") {
		t.Fatalf("want OrgWoke on both of acme's ScaledObjects, got %q", reasons(got))
	}
	if !strings.Contains(got[0].note, "org acme woke (activity) after 1h0m0s dormant") {
		t.Fatalf("note: %q", got[0].note)
	}
	r.OrgDormant("other", time.Now(), 24*time.Hour)
	if got := reasons(drain(r)); got != "pynode-other:OrgDormant" {
		t.Fatalf("want OrgDormant on other's ScaledObject, got %q", got)
	}
}

// A full queue drops Events instead of blocking an answer to KEDA.
func TestFullQueueDrops(t *testing.T) {
	r := newTestRecorder(t)
	for i := range cap(r.queue) + 10 {
		r.Answered("ml", "so", i%2 == 0, false, noReason)
	}
	if r.Dropped() != 10 {
		t.Fatalf("want 10 dropped, got %d", r.Dropped())
	}
}

func noReason() string { return "" }

// A replica that follows the fleet's leader records nothing; when it
// leads, its first answers set each ScaledObject's state without an
// Event (the last leader recorded how it got there), and changes after
// that are recorded.
func TestOnlyTheLeaderRecords(t *testing.T) {
	r := newTestRecorder(t)
	r.Follow()
	r.OrgWoke("acme", "activity", time.Time{})
	r.Answered("ml", "pynode-acme", true, false, noReason)
	if got := reasons(drain(r)); got != "" {
		t.Fatalf("a follower recorded %q", got)
	}
	r.Lead(func() { r.Answered("ml", "pynode-acme", true, false, noReason) })
	if got := reasons(drain(r)); got != "" {
		t.Fatalf("the baseline recorded %q", got)
	}
	r.Answered("ml", "pynode-acme", true, false, noReason)
	r.Answered("ml", "pynode-acme", false, false, noReason)
	r.OrgDormant("other", time.Now(), time.Hour)
	if got := reasons(drain(r)); got != "pynode-acme:ScalerInactive pynode-other:OrgDormant" {
		t.Fatalf("the leader recorded %q, want the change and the transition", got)
	}
}
