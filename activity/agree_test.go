package activity_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/internal/clocktest"
	"github.com/orgscaler/orgscaler/knative"
	"github.com/orgscaler/orgscaler/trigger"
)

// The schedules the property test draws from: none (most orgs), office
// hours in zones with and without daylight saving, a window past
// midnight, adjacent windows, and one with no gap.
var schedules = []string{
	"", "", "",
	"Mon-Fri 08:45-18:00 America/New_York",
	"daily 09:00-17:00 UTC",
	"Fri 22:00-02:00 UTC; Sat 02:00-04:00 UTC",
	"Sat,Sun 10:00-10:30 Europe/Paris; Wed 23:30-00:15 Asia/Kolkata",
	"daily 00:00-24:00 UTC",
}

// Activity's dormancy (the store's state, moved by its scheduler), KEDA's
// answer for the org's pynode (decide) and the Knative actuator's
// min-scale agree on every org at every instant: random orgs, settings,
// schedules and activity over three weeks across a daylight-saving change,
// checked after every step and exactly at orgs' own next changes, where
// two copies of a rule would part.
func TestDormancyAnswersAndKnativeAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 1))
	clock := clocktest.New(time.Date(2026, 3, 20, 7, 0, 0, 0, time.UTC))
	store, err := activity.Open(activity.Options{Dir: t.TempDir(), IdleWindow: 2 * time.Hour, FlushInterval: time.Hour,
		Logger: slog.New(slog.DiscardHandler), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	}()
	orgs := make([]string, 40)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-%02d", i)
		store.Record(orgs[i])
		change(t, store, orgs[i], rng)
	}
	advance := func(d time.Duration) {
		clock.Advance(d)
		activity.FireDue(store)
	}
	end := clock.Now().Add(21 * 24 * time.Hour)
	checks := 0
	for clock.Now().Before(end) && !t.Failed() {
		switch n := rng.IntN(20); {
		case n < 9:
			store.Record(orgs[rng.IntN(len(orgs))])
		case n < 10:
			change(t, store, orgs[rng.IntN(len(orgs))], rng)
		}
		advance(time.Duration(rng.Int64N(int64(90 * time.Minute))))
		checks += agree(t, store, orgs, clock.Now())
		o, _ := store.Get(orgs[rng.IntN(len(orgs))])
		if next := o.Warmth(clock.Now()).Next; !next.IsZero() && next.Before(clock.Now().Add(3*time.Hour)) {
			advance(next.Sub(clock.Now()))
			checks += agree(t, store, orgs, clock.Now())
		}
	}
	t.Logf("%d org-instants agreed", checks)
}

// change gives org random settings, as an admin would.
func change(t *testing.T, store *activity.Store, org string, rng *rand.Rand) {
	t.Helper()
	allowed := rng.IntN(8) > 0
	window := time.Duration(0) // the default
	if rng.IntN(2) == 0 {
		window = time.Duration(1+rng.IntN(6*60)) * time.Minute
	}
	sched := schedules[rng.IntN(len(schedules))]
	if _, err := store.Update(context.Background(), org, activity.Update{ScaleToZeroAllowed: &allowed, IdleWindow: &window, WarmSchedule: &sched}); err != nil {
		t.Fatal(err)
	}
}

// agree checks every org at now, returning how many it checked.
func agree(t *testing.T, store *activity.Store, orgs []string, now time.Time) int {
	t.Helper()
	pynode := trigger.Workload{Kind: trigger.KindPynode, MessagesPerReplica: 1}
	for _, id := range orgs {
		o, ok := store.Get(id)
		if !ok {
			t.Fatalf("org %s is gone", id)
		}
		pynode.Org = id
		answer := decide.Decide(pynode, decide.OrgState{LastActivity: o.LastActivity, ScaleToZeroAllowed: o.ScaleToZeroAllowed,
			IdleWindow: o.IdleWindow, Schedule: o.WarmSchedule}, decide.Backlog{}, now)
		minScale, _ := knative.MinScale(o, 1, now)
		if dormant := o.Dormant(); dormant == answer.Active || answer.Active != (minScale == 1) {
			t.Errorf("at %s, org %s (last active %s, window %s, scale to zero %v, schedule %q): dormant %v, KEDA's answer active %v (%s), Knative min-scale %d",
				now.UTC(), id, o.LastActivity.UTC(), o.IdleWindow, o.ScaleToZeroAllowed, o.WarmSchedule, dormant, answer.Active, answer.Reason(), minScale)
		}
		if at := o.DormantAt(now); answer.Active && !at.Equal(answer.WarmUntil) {
			t.Errorf("at %s, org %s: dormant at %s, but KEDA's answer warm until %s", now.UTC(), id, at.UTC(), answer.WarmUntil.UTC())
		}
	}
	return len(orgs)
}
