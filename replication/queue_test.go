package replication

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// An outage's hints stay a few per subscription however many are
// accepted: counts saturate, the oldest time stands, and nothing is lost
// from the sum.
func TestQueuedHintsMerge(t *testing.T) {
	r, _, _, _, _ := testReplicator(time.Now())
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
	r, orgs, days, _, _ := testReplicator(time.Now())
	const n = 45_000
	long := strings.Repeat("x", 120)
	for i := range n {
		org := fmt.Sprintf("%s-%06d", long, i)
		orgs.Enqueue(mark{org, int64(i)})
		days.Enqueue(mark{org + strings.Repeat("y", 200), int64(i)})
	}
	var took, msgs int
	for {
		seq, p := r.take()
		if p.empty() {
			break
		}
		if p.len() > maxTake {
			t.Fatalf("one publish took %d items, want at most %d", p.len(), maxTake)
		}
		took += p.len()
		for _, m := range p.messages("r0") {
			msgs++
			if size := proto.Size(m); size > 5<<20 {
				t.Fatalf("a message of %d bytes (%d changes, %d days): want at most 5 MiB", size, len(m.GetChanges()), len(m.GetHistory()))
			}
			if len(m.GetChanges()) > maxBatch || len(m.GetHistory()) > maxBatch {
				t.Fatalf("a message of %d changes and %d days: want at most %d of each", len(m.GetChanges()), len(m.GetHistory()), maxBatch)
			}
		}
		if r.queued() == (seq == r.enqueued) || (r.queued() && seq != 0) {
			t.Fatalf("take confirmed up to %d with something queued=%v (enqueued %d)", seq, r.queued(), r.enqueued)
		}
	}
	if took != 2*n {
		t.Fatalf("took %d items, want %d", took, 2*n)
	}
	t.Logf("%d items in %d messages", took, msgs)

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
