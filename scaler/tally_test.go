package scaler_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/internal/clocktest"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/usage"
)

type told struct {
	mu  sync.Mutex
	got []string
}

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
// it); and KEDA's own calls are told to neither.
func TestTallyCountsOncePerObject(t *testing.T) {
	c := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store, err := activity.Open(activity.Options{Dir: t.TempDir(), IdleWindow: time.Hour, FlushInterval: time.Second, Now: c.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	obs, ledger := &told{}, &observed{ids: map[string]bool{}}
	s := scaler.New(scaler.Options{Orgs: store, Now: c.Now, Observer: obs, Usage: ledger, Tallied: true})
	workload := func(md map[string]string) decide.Workload {
		w, err := decide.ParseMetadata(md)
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
	s.Tally(targets)
	if len(obs.got) != 1 || obs.got[0] != "ml/two-orgs active" {
		t.Fatalf("told %v; want ml/two-orgs active, once", obs.got)
	}
	if len(ledger.ids) != 2 {
		t.Fatalf("ledger observed %v; want both triggers", ledger.ids)
	}
	r, err := s.IsActive(context.Background(), &pb.ScaledObjectRef{Namespace: "ml", Name: "two-orgs", ScalerMetadata: map[string]string{"workload": "pynode", "org": "asleep"}})
	if err != nil || r.GetResult() {
		t.Fatalf("the dormant org's trigger: %v, %v; want inactive (the object is active by its other trigger)", r, err)
	}
	if len(obs.got) != 1 {
		t.Fatalf("an answer to KEDA was told to the Observer while the leader tallies: %v", obs.got)
	}
}
