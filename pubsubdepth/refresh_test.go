package pubsubdepth

import (
	"context"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// After a restart while Monitoring lags by more than the max age, the
// newest point (10,000 messages, 10 minutes old) is found by the lookback
// and makes the backlog blind: never an empty queue.
func TestTrackerOldPointAfterRestartIsBlind(t *testing.T) {
	e := newTrackerEnv(t)
	e.exist(t, sub)
	e.ms.Set(sub, 10_000, e.clock.Now().Add(-10*time.Minute))
	e.tr.Backlog(sub)
	e.refresh()
	d := e.tr.Backlog(sub)
	if d.Known {
		t.Fatalf("a 10-minute-old point of 10000 messages must leave the backlog blind, got %+v (%s)", d, d.Reason())
	}
	if !strings.Contains(d.Reason(), "older than the depth max age") || d.Observed.Messages != 10_000 {
		t.Fatalf("want the stale point named, got %q", d.Reason())
	}
}

// Only an hour with no point at all makes an existing subscription empty;
// a series that stopped is blind until then.
func TestTrackerEmptyOnlyAfterTheLookback(t *testing.T) {
	e := newTrackerEnv(t)
	e.exist(t, sub)
	t0 := e.clock.Now()
	e.ms.Set(sub, 7, t0)
	e.tr.Backlog(sub)
	e.refresh()
	e.clock.Set(t0.Add(30 * time.Minute))
	e.tr.Backlog(sub)
	e.refresh()
	if d := e.tr.Backlog(sub); d.Known {
		t.Fatalf("30m without a point: want blind, got %+v", d)
	}
	e.clock.Set(t0.Add(61 * time.Minute))
	e.tr.Backlog(sub)
	e.refresh()
	if d := e.tr.Backlog(sub); !d.Known || d.Messages != 0 || !strings.Contains(d.Reason(), "no point over the last 1h0m0s") {
		t.Fatalf("61m without a point, subscription exists: want 0, got %+v (%s)", d, d.Reason())
	}
}

// Hints saturate and stay bounded: two of MaxInt64 leave the backlog at
// MaxInt64, never negative; a flood keeps at most maxHints entries.
func TestTrackerHintsSaturateAndStayBounded(t *testing.T) {
	e := newTrackerEnv(t)
	e.ms.Set(sub, 5, e.clock.Now())
	e.tr.Backlog(sub)
	e.refresh()
	e.clock.Set(e.clock.Now().Add(time.Second))
	e.tr.Hint(sub, math.MaxInt64)
	d, _ := e.tr.Hint(sub, math.MaxInt64)
	if !d.Known || d.Messages != math.MaxInt64 || d.Hint != math.MaxInt64 {
		t.Fatalf("two MaxInt64 hints: want MaxInt64 messages, got %+v", d)
	}
	first := e.clock.Now()
	for i := range 10_000 {
		e.clock.Set(first.Add(time.Duration(i) * time.Millisecond))
		e.tr.Hint(sub, 3)
	}
	e.tr.mu.Lock()
	n, oldest := len(e.tr.subs[sub].hints), e.tr.subs[sub].hints[0].at
	e.tr.mu.Unlock()
	if n > maxHints || !oldest.Equal(first) {
		t.Fatalf("want at most %d hints with the oldest time %v kept, got %d from %v", maxHints, first, n, oldest)
	}
	if d := e.tr.Backlog(sub); d.Messages != math.MaxInt64 {
		t.Fatalf("saturated: want MaxInt64, got %d", d.Messages)
	}
}

// runTracker runs a tracker on real time over the test's MetricService.
func runTracker(t *testing.T, e *trackerEnv, refresh time.Duration, checker Checker) *Tracker {
	t.Helper()
	mon := e.tr.opts.Source.(*Monitoring)
	mon.opts.Now = time.Now
	tr := NewTracker(TrackerOptions{Source: mon, Checker: checker, Refresh: refresh, MaxAge: 5 * time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tr
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A project whose queries hang delays no other project's backlog.
func TestTrackerSlowProjectDelaysNoOther(t *testing.T) {
	e := newTrackerEnv(t)
	slow, fast := "projects/proj-slow/subscriptions/jobs", "projects/proj-fast/subscriptions/jobs"
	release := e.ms.Hang("proj-slow")
	defer release()
	e.ms.Set(slow, 1, time.Now())
	e.ms.Set(fast, 2, time.Now())
	tr := runTracker(t, e, time.Hour, nil) // one turn each: only a concurrent fetch can answer fast
	tr.Backlog(slow)
	tr.Backlog(fast)
	waitFor(t, "the fast project's backlog while the slow one hangs", 5*time.Second, func() bool {
		d := tr.Backlog(fast)
		return d.Known && d.Messages == 2
	})
	if d := tr.Backlog(slow); d.Known {
		t.Fatalf("the hanging project cannot be known: %+v", d)
	}
}

// Ever-new subscription names make at most one query per project per
// refresh: the first name is fetched at once, the rest wait for the turn.
func TestTrackerNewNamesDoNotMultiplyQueries(t *testing.T) {
	e := newTrackerEnv(t)
	tr := runTracker(t, e, time.Hour, nil)
	first := "projects/p-names/subscriptions/first"
	e.ms.Set(first, 1, time.Now())
	tr.Backlog(first)
	waitFor(t, "the first name fetched at once", 5*time.Second, func() bool { return tr.Backlog(first).Known })
	for i := range 200 {
		tr.Backlog("projects/p-names/subscriptions/new-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
	}
	// A name in another project is fetched at once; by then every kick of
	// the names above has been handled.
	other := "projects/p-other/subscriptions/jobs"
	e.ms.Set(other, 1, time.Now())
	tr.Backlog(other)
	waitFor(t, "the other project fetched", 5*time.Second, func() bool { return tr.Backlog(other).Known })
	if n := e.ms.CallsFor("p-names"); n != 1 {
		t.Fatalf("200 new names in one refresh: want 1 query of the project, got %d", n)
	}
}

// A subscription whose query keeps failing is retried with backoff.
func TestTrackerFailingSubscriptionBacksOff(t *testing.T) {
	e := newTrackerEnv(t)
	e.ms.SetFailFor("proj-bad", status.Error(codes.PermissionDenied, "no monitoring.viewer"))
	bad := "projects/proj-bad/subscriptions/jobs"
	e.tr.Backlog(bad)
	t0 := e.clock.Now()
	var calls []int
	for i := range 8 { // two minutes of 15s refreshes
		e.clock.Set(t0.Add(time.Duration(i) * 15 * time.Second))
		for _, job := range e.tr.due() {
			e.tr.fetch(context.Background(), job)
		}
		calls = append(calls, e.ms.CallsFor("proj-bad"))
	}
	// Tries at 0s, 15s, 45s, 105s: 15s, then 30s, then 60s apart.
	if got := calls[len(calls)-1]; got != 4 {
		t.Fatalf("want 4 tries in 2 minutes with backoff, got %d (%v)", got, calls)
	}
}

// Existence lookups that hang (Pub/Sub unreachable) never hold back the
// backlog fetches.
func TestTrackerHangingLookupsDoNotStallFetches(t *testing.T) {
	e := newTrackerEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	checker := NewPubSubChecker(option.WithEndpoint(lis.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	defer checker.Close()
	tr := runTracker(t, e, 50*time.Millisecond, checker)
	for i := range 20 { // each needs a lookup: no point
		tr.Backlog("projects/p-tracker/subscriptions/ghost-" + string(rune('a'+i)))
	}
	e.ms.Set(sub, 1, time.Now())
	tr.Backlog(sub)
	waitFor(t, "first point", 3*time.Second, func() bool { return tr.Backlog(sub).Messages == 1 })
	e.ms.Set(sub, 2, time.Now())
	waitFor(t, "a newer point while every lookup hangs", 3*time.Second, func() bool { return tr.Backlog(sub).Messages == 2 })
}

// A hint from another replica counts once, however often Pub/Sub delivers
// it, and from the instant it arrived there.
func TestTrackerAppliesRemoteHintsOnce(t *testing.T) {
	e := newTrackerEnv(t)
	e.ms.Set(sub, 0, e.clock.Now())
	e.tr.Backlog(sub)
	e.refresh()
	at := e.clock.Now().Add(time.Second)
	e.clock.Set(at.Add(time.Second))
	for range 3 {
		e.tr.ApplyHint("scaler-1/7", sub, 4, at)
	}
	e.tr.ApplyHint("scaler-2/1", sub, 1, at)
	if d := e.tr.Backlog(sub); d.Messages != 5 || d.Hint != 5 {
		t.Fatalf("want 4+1 hinted messages, each counted once, got %+v", d)
	}
	e.tr.ApplyHint("scaler-1/8", sub, 9, at.Add(-10*time.Minute)) // older than the max age: nothing to count
	if d := e.tr.Backlog(sub); d.Messages != 5 {
		t.Fatalf("a hint older than the max age must not count: %+v", d)
	}
}
