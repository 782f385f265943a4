package pubsubdepth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/internal/clocktest"
	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
)

type trackerEnv struct {
	ms      *monitoringtest.Server
	clock   *clocktest.Clock
	tr      *Tracker
	emb     *Embedded // where subscriptions exist, for the checker
	project string
}

func newTrackerEnv(t *testing.T) *trackerEnv {
	t.Helper()
	ms, mon := startMetricService(t)
	clock := clocktest.New(time.Now().Truncate(time.Second))
	mon.opts.Now = clock.Now
	emb, err := StartEmbedded("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Close() })
	checker := NewPubSubChecker(option.WithEndpoint(emb.Addr()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	t.Cleanup(func() { _ = checker.Close() })
	tr := NewTracker(TrackerOptions{Source: mon, Checker: checker, Refresh: 15 * time.Second, MaxAge: 5 * time.Minute,
		MinDropAfter: time.Second, Now: clock.Now})
	return &trackerEnv{ms: ms, clock: clock, tr: tr, emb: emb, project: "p-tracker"}
}

// exist creates sub in the Pub/Sub the checker asks.
func (e *trackerEnv) exist(t *testing.T, sub string) {
	t.Helper()
	pubsubtest.Create(t, pubsubtest.Client(t, e.emb.Addr(), e.project), sub)
}

func (e *trackerEnv) refresh() { e.tr.refreshNow(context.Background()) }

const sub = "projects/p-tracker/subscriptions/jobs"

func TestTrackerStalenessAndGaps(t *testing.T) {
	e := newTrackerEnv(t)
	e.exist(t, sub)
	if d := e.tr.Backlog(sub); d.Known || !strings.Contains(d.Reason(), "not been fetched") {
		t.Fatalf("before any fetch: want unknown, got %+v", d)
	}
	t0 := e.clock.Now()
	e.ms.Set(sub, 12, t0.Add(-2*time.Minute)) // Monitoring's usual lag
	e.refresh()
	if d := e.tr.Backlog(sub); !d.Known || d.Messages != 12 || !d.Observed.At.Equal(t0.Add(-2*time.Minute)) {
		t.Fatalf("want 12 observed 2m ago, got %+v", d)
	}
	// A gap: no newer point for a while. The last value holds while it is
	// younger than the max age...
	for range 12 { // KEDA keeps asking every 15s
		e.clock.Set(e.clock.Now().Add(15 * time.Second))
		e.tr.Backlog(sub)
		e.refresh()
	}
	if d := e.tr.Backlog(sub); !d.Known || d.Messages != 12 {
		t.Fatalf("gap within max age: want 12 kept, got %+v", d)
	}
	// ...and past it the backlog is unknown: blind, not zero.
	e.clock.Set(t0.Add(3*time.Minute + time.Second)) // the point is 5m1s old
	if d := e.tr.Backlog(sub); d.Known || !strings.Contains(d.Reason(), "older than the depth max age") {
		t.Fatalf("past max age: want unknown, got %+v", d)
	}
}

func TestTrackerNeverHadAPoint(t *testing.T) {
	e := newTrackerEnv(t)
	quiet := "projects/p-tracker/subscriptions/quiet"
	e.exist(t, quiet)
	e.tr.Backlog(quiet)
	e.refresh()
	if d := e.tr.Backlog(quiet); !d.Known || d.Messages != 0 || d.Exists != Exists {
		t.Fatalf("an existing subscription with no point counts as 0, got %+v", d)
	}
	ghost := "projects/p-tracker/subscriptions/ghost"
	e.tr.Backlog(ghost)
	e.refresh()
	if d := e.tr.Backlog(ghost); d.Known || d.Exists != Missing || !strings.Contains(d.Reason(), "does not exist") {
		t.Fatalf("a missing subscription: want unknown and missing, got %+v", d)
	}
	// Created later: looked up again after RecheckMissing.
	e.exist(t, ghost)
	e.refresh()
	if d := e.tr.Backlog(ghost); d.Exists != Missing {
		t.Fatalf("rechecked before RecheckMissing: %+v", d)
	}
	e.clock.Set(e.clock.Now().Add(61 * time.Second))
	e.refresh()
	if d := e.tr.Backlog(ghost); d.Exists != Exists || !d.Known {
		t.Fatalf("want found after the recheck, got %+v", d)
	}
}

func TestTrackerOutageKeepsLastValueUntilMaxAge(t *testing.T) {
	e := newTrackerEnv(t)
	e.exist(t, sub)
	t0 := e.clock.Now()
	e.ms.Set(sub, 4, t0)
	e.tr.Backlog(sub)
	e.refresh()
	e.ms.SetFail(status.Error(codes.Internal, "monitoring is down"))
	e.clock.Set(t0.Add(time.Minute))
	e.refresh()
	d := e.tr.Backlog(sub)
	if !d.Known || d.Messages != 4 || d.Err == nil || !strings.Contains(d.Err.Error(), "monitoring is down") {
		t.Fatalf("outage: want 4 kept and the error shown, got %+v", d)
	}
	e.clock.Set(t0.Add(6 * time.Minute))
	e.tr.Backlog(sub)
	e.refresh()
	if d := e.tr.Backlog(sub); d.Known {
		t.Fatalf("outage past max age: want unknown, got %+v", d)
	}
	e.ms.SetFail(nil)
	e.ms.Set(sub, 1, e.clock.Now())
	e.refresh()
	if d := e.tr.Backlog(sub); !d.Known || d.Messages != 1 || d.Err != nil {
		t.Fatalf("after the outage: want 1, got %+v", d)
	}
}

func TestTrackerHints(t *testing.T) {
	e := newTrackerEnv(t)
	t0 := e.clock.Now()
	e.ms.Set(sub, 0, t0.Add(-time.Minute))
	w, err := e.tr.Watch(sub)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e.refresh()
	drain(w)
	e.clock.Set(t0.Add(time.Second))
	if d, _ := e.tr.Hint(sub, 3); !d.Known || d.Messages != 3 {
		t.Fatalf("hint: want 3, got %+v", d)
	}
	select {
	case <-w.C():
	default:
		t.Fatal("a hint must reach the watchers at once")
	}
	e.tr.Hint(sub, 2)
	// Monitoring still shows data from before the hint: the hint stays.
	e.ms.Set(sub, 0, t0.Add(-time.Second+500*time.Millisecond))
	e.refresh()
	if d := e.tr.Backlog(sub); d.Messages != 5 || d.Hint != 5 {
		t.Fatalf("points older than the hint must not clear it: %+v", d)
	}
	// Data observed after the hint: the source has caught up.
	e.clock.Set(t0.Add(2 * time.Minute))
	e.ms.Set(sub, 4, t0.Add(90*time.Second))
	e.refresh()
	if d := e.tr.Backlog(sub); d.Messages != 4 || d.Hint != 0 {
		t.Fatalf("want the observed 4 and no hint, got %+v", d)
	}
	// A hint the source never catches up with ends after the max age.
	e.tr.Hint(sub, 7)
	e.clock.Set(e.clock.Now().Add(5*time.Minute + time.Second))
	if d := e.tr.Backlog(sub); d.Hint != 0 {
		t.Fatalf("hint outlived the max age: %+v", d)
	}
}

func TestTrackerDropsSubscriptionsNobodyAsksAbout(t *testing.T) {
	e := newTrackerEnv(t)
	e.tr.opts.MinDropAfter = 2 * time.Minute // 10 refreshes of 15s are longer
	other := "projects/p-tracker/subscriptions/other"
	e.tr.Backlog(sub)
	e.tr.Backlog(other)
	for range 10 {
		e.clock.Set(e.clock.Now().Add(15 * time.Second))
		e.tr.Backlog(other)
		e.refresh()
	}
	e.clock.Set(e.clock.Now().Add(15 * time.Second))
	e.refresh()
	var tracked []string
	for _, d := range e.tr.Snapshot() {
		tracked = append(tracked, d.Subscription)
	}
	if strings.Join(tracked, " ") != other {
		t.Fatalf("want only %s tracked after 10 refreshes, got %v", other, tracked)
	}
	last := e.ms.Requests()[len(e.ms.Requests())-1].GetFilter()
	if strings.Contains(last, `"jobs"`) {
		t.Fatalf("a dropped subscription is still queried: %s", last)
	}
}

// A subscription named for the first time is fetched at once, by the
// background loop, not on the caller's path.
func TestTrackerFetchesNewSubscriptionAtOnce(t *testing.T) {
	e := newTrackerEnv(t)
	e.tr.opts.Refresh = time.Hour // only the kick can fetch
	e.ms.Set(sub, 9, e.clock.Now())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.tr.Run(ctx)
	if d := e.tr.Backlog(sub); d.Known {
		t.Fatalf("the first call cannot know yet: %+v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d := e.tr.Backlog(sub); !d.Known; d = e.tr.Backlog(sub) {
		if time.Now().After(deadline) {
			t.Fatalf("not fetched within 5s: %+v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := e.tr.Backlog(sub); d.Messages != 9 {
		t.Fatalf("want 9, got %+v", d)
	}
}

func drain(w *Watch) {
	select {
	case <-w.C():
	default:
	}
}

func TestParseName(t *testing.T) {
	if p, s, err := ParseName("projects/a-b/subscriptions/c"); err != nil || p != "a-b" || s != "c" {
		t.Fatalf("got %s %s %v", p, s, err)
	}
	for _, bad := range []string{"", "c", "projects/a/topics/c", "projects//subscriptions/c", "projects/a/subscriptions/", "projects/a/subscriptions/c/d"} {
		if _, _, err := ParseName(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	_ = errors.New
}

// Producers that hint more often than Monitoring's lag: each hint ends
// when a point observed after it arrives, so they never pile up on a
// backlog the source already shows.
func TestTrackerHintsDoNotPileUp(t *testing.T) {
	e := newTrackerEnv(t)
	t0 := e.clock.Now()
	e.ms.Set(sub, 0, t0)
	e.tr.Backlog(sub)
	e.refresh()
	for i := range 10 {
		e.clock.Set(t0.Add(time.Duration(i+1) * 30 * time.Second))
		e.tr.Hint(sub, 2)
		// Monitoring, 1-3 minutes late, has seen the hints of 2 minutes ago.
		seen := int64(2 * min(i+1, max(i-3, 0)))
		e.ms.Set(sub, seen, e.clock.Now().Add(-2*time.Minute+time.Second))
		e.tr.Backlog(sub)
		e.refresh()
		d := e.tr.Backlog(sub)
		if d.Hint > 10 {
			t.Fatalf("round %d: %d hinted messages still counted: hints pile up (%+v)", i, d.Hint, d)
		}
	}
}

// One project's query failing leaves the other projects' points standing.
func TestTrackerOneProjectFailing(t *testing.T) {
	e := newTrackerEnv(t)
	a, b := "projects/proj-a/subscriptions/jobs", "projects/proj-b/subscriptions/jobs"
	e.ms.Set(a, 1, e.clock.Now())
	e.ms.Set(b, 2, e.clock.Now())
	e.ms.SetFailFor("proj-a", status.Error(codes.PermissionDenied, "no monitoring.viewer on proj-a"))
	e.tr.Backlog(a)
	e.tr.Backlog(b)
	e.refresh()
	if d := e.tr.Backlog(b); !d.Known || d.Messages != 2 || d.Err != nil {
		t.Fatalf("proj-b must stand: %+v", d)
	}
	if d := e.tr.Backlog(a); d.Known || d.Err == nil || !strings.Contains(d.Err.Error(), "monitoring.viewer") {
		t.Fatalf("proj-a: want unknown with its error, got %+v", d)
	}
}

// A hint on a subscription found missing looks it up again at once: it may
// have just been created by the producer.
func TestTrackerHintRechecksMissing(t *testing.T) {
	e := newTrackerEnv(t)
	fresh := "projects/p-tracker/subscriptions/fresh"
	e.tr.Backlog(fresh)
	e.refresh()
	if d := e.tr.Backlog(fresh); d.Exists != Missing {
		t.Fatalf("want missing, got %+v", d)
	}
	e.exist(t, fresh)
	e.tr.Hint(fresh, 1)
	e.tr.refreshNow(context.Background())
	if d := e.tr.Backlog(fresh); d.Exists != Exists || !d.Known || d.Messages != 1 {
		t.Fatalf("want found at once, with the hint counted: %+v", d)
	}
}

// Past MaxSubscriptions a subscription not yet tracked is refused by name
// (KEDA's metadata, a hint, a stream), another replica's hint for it is
// dropped, the tracked ones still answer, and a forgotten one frees its
// place.
func TestTrackerCapsSubscriptions(t *testing.T) {
	e := newTrackerEnv(t)
	e.tr.opts.MaxSubscriptions = 2
	a, b, c := "projects/p-tracker/subscriptions/a", "projects/p-tracker/subscriptions/b", "projects/p-tracker/subscriptions/c"
	e.tr.Backlog(a)
	if _, err := e.tr.Hint(b, 1); err != nil {
		t.Fatal(err)
	}
	var le *LimitError
	if d := e.tr.Backlog(c); !errors.As(d.Err, &le) || le.Subscription != c || !strings.Contains(d.Err.Error(), "--max-subscriptions") {
		t.Fatalf("a third subscription's backlog: %+v; want a LimitError naming it and --max-subscriptions", d)
	}
	if _, err := e.tr.Hint(c, 1); !errors.As(err, &le) {
		t.Fatalf("a hint for a third subscription: %v; want a LimitError", err)
	}
	if _, err := e.tr.Watch(c); !errors.As(err, &le) {
		t.Fatalf("a watch of a third subscription: %v; want a LimitError", err)
	}
	e.tr.ApplyHint("r1/1", c, 5, e.clock.Now())
	if e.tr.Len() != 2 || e.tr.Tracked(c) {
		t.Fatalf("%d tracked (c: %v) after refusals; want 2, without c", e.tr.Len(), e.tr.Tracked(c))
	}
	if d, err := e.tr.Hint(b, 2); err != nil || d.Hint != 3 {
		t.Fatalf("a tracked subscription's hint past the cap: %+v, %v; want 3 hinted", d, err)
	}
	e.tr.Forget(a)
	if d := e.tr.Backlog(c); d.Err != nil {
		t.Fatalf("c once a is forgotten: %v", d.Err)
	}
}

// A point stamped in this clock's future (the node's clock minutes behind
// Monitoring's) is seen, never has a negative age: it ages from when it
// came, and is blind once real elapsed time passes the max age.
func TestTrackerPointFromTheFuture(t *testing.T) {
	e := newTrackerEnv(t)
	e.exist(t, sub)
	e.tr.Backlog(sub)
	t0 := e.clock.Now()
	e.ms.Set(sub, 7, t0.Add(3*time.Minute))
	e.refresh()
	d := e.tr.Backlog(sub)
	if !d.Known || d.Messages != 7 || d.age < 0 {
		t.Fatalf("a point from 3m ahead: %+v (age %s); want 7 known, age never negative", d, d.age)
	}
	e.clock.Set(t0.Add(5*time.Minute + time.Second))
	if d := e.tr.Backlog(sub); d.Known {
		t.Fatalf("5m1s after a point from 3m ahead came, with no newer one: %+v; want blind", d)
	}
}
