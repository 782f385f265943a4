package tally_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/internal/clocktest"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/tally"
	"github.com/orgscaler/orgscaler/trigger"
	"github.com/orgscaler/orgscaler/usage"
)

type told struct {
	mu  sync.Mutex
	got []string
}

func (o *told) Lead(baseline func()) { baseline() }
func (o *told) Follow()              {}

func (o *told) Answered(ns, name string, active, blind bool, _ func() string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	state := "inactive"
	if active {
		state = "active"
	}
	o.got = append(o.got, ns+"/"+name+" "+state)
}

type observed struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (l *observed) Observe(id string, _ usage.Answer, _ time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids[id] = true
}

// As the fleet's leader tallies: each trigger goes to the ledger, each
// object once to the Observer (active when any trigger is, as KEDA takes
// it); and KEDA's own calls, to a server in a fleet, are told to neither.
func TestTallyCountsOncePerObject(t *testing.T) {
	c := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store, err := activity.Open(activity.Options{Dir: t.TempDir(), IdleWindow: time.Hour, FlushInterval: time.Second, Now: c.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	obs, ledger := &told{}, &observed{ids: map[string]bool{}}
	s := scaler.New(scaler.Options{Orgs: store, Now: c.Now})
	workload := func(md map[string]string) trigger.Workload {
		w, err := trigger.ParseMetadata(md)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	if _, err := store.Sight("asleep"); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Hour) // asleep goes dormant; awake is new, so active
	so := scaledobjects.Key{Namespace: "ml", Name: "two-orgs"}
	targets := []scaledobjects.Target{
		{Key: so, Workload: workload(map[string]string{"workload": "pynode", "org": "asleep"})},
		{Key: so, Workload: workload(map[string]string{"workload": "model", "org": "awake"})},
	}
	tl := tally.New(tally.Options{Answers: s, Targets: fixed(targets), Ledger: ledger, Observer: obs})
	tl.Run("")
	if len(obs.got) != 1 || obs.got[0] != "ml/two-orgs active" {
		t.Fatalf("told %v; want ml/two-orgs active, once", obs.got)
	}
	if len(ledger.ids) != 2 {
		t.Fatalf("ledger observed %v; want both triggers", ledger.ids)
	}
	r, err := s.IsActive(context.Background(), &kedapb.ScaledObjectRef{Namespace: "ml", Name: "two-orgs", ScalerMetadata: map[string]string{"workload": "pynode", "org": "asleep"}})
	if err != nil || r.GetResult() {
		t.Fatalf("the dormant org's trigger: %v, %v; want inactive (the object is active by its other trigger)", r, err)
	}
	if len(obs.got) != 1 {
		t.Fatalf("an answer to KEDA was told to the Observer while the leader tallies: %v", obs.got)
	}
}

// fixed is the cluster's triggers, as the registry would list them.
type fixed []scaledobjects.Target

func (f fixed) Targets(org string) []scaledobjects.Target {
	var out []scaledobjects.Target
	for _, t := range f {
		if org == "" || t.Workload.Org == org {
			out = append(out, t)
		}
	}
	return out
}

// baselined records how the Observer was led: what it heard during its
// baseline, and whether it follows.
type baselined struct {
	told
	baseline  []string
	following bool
}

func (b *baselined) Lead(baseline func()) {
	baseline()
	b.mu.Lock()
	b.baseline, b.got, b.following = b.got, nil, false
	b.mu.Unlock()
}

func (b *baselined) Follow() {
	b.mu.Lock()
	b.following = true
	b.mu.Unlock()
}

// While following, an org's change tallies nothing; a term's first tally
// is the Observer's baseline, an org that changes is tallied at once, and
// Follow stops the tally before the Observer follows.
func TestTallyLeadsAndFollows(t *testing.T) {
	store, err := activity.Open(activity.Options{Dir: t.TempDir(), IdleWindow: time.Hour, FlushInterval: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	md := map[string]string{"workload": "pynode", "org": "acme"}
	w, err := trigger.ParseMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	obs, ledger := &baselined{}, &observed{ids: map[string]bool{}}
	tl := tally.New(tally.Options{Answers: scaler.New(scaler.Options{Orgs: store}), Ledger: ledger, Observer: obs,
		Targets: fixed{{Key: scaledobjects.Key{Namespace: "ml", Name: "acme"}, Workload: w}}})
	tl.Follow()
	tl.Org("acme")
	if len(ledger.ids) != 0 || !obs.following {
		t.Fatalf("while following: ledger %v, observer following %v; want nothing counted", ledger.ids, obs.following)
	}
	tl.Lead("scaler-0-1")
	if len(obs.baseline) != 1 || obs.following {
		t.Fatalf("the term's baseline: %v (following %v); want ml/acme once", obs.baseline, obs.following)
	}
	tl.Org("acme")
	deadline := time.Now().Add(tally.Every / 2) // before the first tick's tally of all
	for {
		obs.mu.Lock()
		n := len(obs.got)
		obs.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an org's change was not tallied within %s", tally.Every/2)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tl.Follow()
	if !obs.following {
		t.Fatal("the Observer still leads after Follow")
	}
}
