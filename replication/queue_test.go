package replication

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/idletimes"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

func newTestReplicator() *Replicator {
	return &Replicator{opts: Options{Replica: "r0"}, q: newQueue(), published: make(chan struct{}), kick: make(chan struct{}, 1), m: newMetrics(nil)}
}

// An outage's hints stay a few per subscription however many are
// accepted: counts saturate, the oldest time stands, and nothing is lost
// from the sum.
func TestQueuedHintsMerge(t *testing.T) {
	r := newTestReplicator()
	at := time.Unix(1_800_000_000, 0)
	for i := range 100_000 {
		r.EnqueueHint("projects/p/subscriptions/a", 3, at.Add(time.Duration(i)*time.Millisecond))
		r.EnqueueHint("projects/p/subscriptions/b", math.MaxInt64/2, at)
	}
	_, p := r.take()
	sums := map[string]int64{}
	oldest := map[string]int64{}
	for _, h := range p.hints {
		sums[h.GetSubscription()] = satAdd(sums[h.GetSubscription()], h.GetMessages())
		if o, ok := oldest[h.GetSubscription()]; !ok || h.GetAtUnixNano() < o {
			oldest[h.GetSubscription()] = h.GetAtUnixNano()
		}
	}
	if len(p.hints) != 2*maxQueuedHints {
		t.Fatalf("%d hints queued for 2 subscriptions, want %d", len(p.hints), 2*maxQueuedHints)
	}
	if sums["projects/p/subscriptions/a"] != 300_000 || sums["projects/p/subscriptions/b"] != math.MaxInt64 {
		t.Fatalf("sums %v, want 300000 and MaxInt64 (saturated)", sums)
	}
	if oldest["projects/p/subscriptions/a"] != at.UnixNano() {
		t.Fatalf("oldest hint of a at %d, want the first's %d", oldest["projects/p/subscriptions/a"], at.UnixNano())
	}
}

// However much is queued, every message stays under Pub/Sub's limits, and
// a publish takes at most maxTake items: Sync is confirmed only by the
// take that empties the queue.
func TestPublishesAreBounded(t *testing.T) {
	r := newTestReplicator()
	const orgs = 45_000
	long := strings.Repeat("x", 120)
	for i := range orgs {
		org := fmt.Sprintf("%s-%06d", long, i)
		r.Enqueue(activity.Change{Org: org, Activity: time.Unix(1_800_000_000, int64(i))})
		var c idletimes.Counts
		c.Org, c.Replica = org, "r0"
		for b := range c.History.Bins {
			c.History.Bins[b] = math.MaxUint32 - uint32(b)
		}
		r.EnqueueIdle(c)
	}
	var taken, msgs int
	for {
		seq, p := r.take()
		if p.empty() {
			break
		}
		n := len(p.changes) + len(p.idle)
		if n > maxTake {
			t.Fatalf("one publish took %d items, want at most %d", n, maxTake)
		}
		taken += n
		for _, m := range p.messages("r0") {
			msgs++
			if size := proto.Size(m); size > 5<<20 {
				t.Fatalf("a message of %d bytes (%d changes, %d idle counts): want at most 5 MiB", size, len(m.GetChanges()), len(m.GetIdleTimes()))
			}
		}
		if r.q.empty() != (seq == r.enqueued) || (!r.q.empty() && seq != 0) {
			t.Fatalf("take confirmed up to %d with the queue empty=%v (enqueued %d)", seq, r.q.empty(), r.enqueued)
		}
	}
	if taken != 2*orgs {
		t.Fatalf("took %d items, want %d", taken, 2*orgs)
	}
	t.Logf("%d items in %d messages", taken, msgs)

	// Items far larger than usual split by bytes, not only by count.
	var big pending
	for i := range 100 {
		big.hints = append(big.hints, &pb.SubscriptionHint{Id: fmt.Sprint(i), Subscription: strings.Repeat("s", 100<<10), Messages: 1})
	}
	ms := big.messages("r0")
	for _, m := range ms {
		if size := proto.Size(m); size > 5<<20 {
			t.Fatalf("a message of %d bytes: want at most 5 MiB", size)
		}
	}
	if len(ms) < 2 {
		t.Fatalf("10 MB of hints in %d message(s)", len(ms))
	}
}

// A change of the warm schedule alone is a setting, not activity: it is
// queued as it is, not folded into the org's latest activity.
func TestScheduleChangeIsQueued(t *testing.T) {
	r := newTestReplicator()
	sched := "Mon-Fri 08:00-18:00 Europe/Berlin"
	r.Enqueue(activity.Change{Org: "acme", WarmSchedule: &sched, WarmScheduleAt: hlc.Stamp(7)})
	r.Enqueue(activity.Change{Org: "acme", Activity: time.Unix(1_800_000_000, 0)})
	_, p := r.take()
	var got *pb.OrgChange
	for _, m := range p.messages("r0") {
		for _, c := range m.GetChanges() {
			if c.GetWarmSchedule() == sched {
				got = c
			}
		}
	}
	if got == nil || got.GetWarmScheduleAt() != 7 {
		t.Fatalf("the schedule change was not published: %+v", p.changes)
	}
}

// Idle counts or history of an org this replica has not heard of (its
// creation is in a message not applied yet) make the message early, to be
// applied again; the fleet's counts (no org) and known orgs never do.
func TestEarlyMessages(t *testing.T) {
	s := Sinks{Known: func(org string) bool { return org == "held" || org == "deleted" }}
	for _, c := range []struct {
		m    *pb.ChangeBatch
		want string
	}{
		{&pb.ChangeBatch{History: []*pb.ActivityDay{{Org: "held"}, {Org: "deleted"}}}, ""},
		{&pb.ChangeBatch{History: []*pb.ActivityDay{{Org: "held"}, {Org: "later"}}}, "later"},
		{&pb.ChangeBatch{IdleTimes: []*pb.IdleCounts{{Org: "", Replica: "r1"}, {Org: "later", Replica: "r1"}}}, "later"},
		{&pb.ChangeBatch{IdleTimes: []*pb.IdleCounts{{Org: "", Replica: "r1"}}}, ""},
	} {
		if got := s.early(c.m); got != c.want {
			t.Errorf("%v: early %q, want %q", c.m, got, c.want)
		}
	}
}
