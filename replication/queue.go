package replication

import (
	"math"

	"google.golang.org/protobuf/proto"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Limits on what one publish carries. Pub/Sub refuses a message over
// 10 MB and a request over 10 MB or 1,000 messages; a message here stays
// far under, and a publish takes at most maxTake items, so a restart's
// republish of a million orgs goes in many publishes, each with its own
// deadline, rather than one that must finish within one.
const (
	maxBatch        = 2000    // items of one kind in one message
	maxMessageBytes = 4 << 20 // encoded bytes in one message
	maxTake         = 20_000  // items in one publish
	// maxQueuedHints bounds the hints queued per subscription: past it the
	// two oldest merge, as pubsubdepth merges hints in memory (saturating
	// count, older time), so an outage's flood of hints stays small.
	maxQueuedHints = 16
)

// hintQueue is the enqueue hints waiting to be published, per
// subscription, at most maxQueuedHints each. Its owner locks it.
type hintQueue map[string][]*pb.SubscriptionHint

// add queues h behind the hints queued for its subscription, merging
// the two oldest when there are maxQueuedHints. The merged hint keeps the
// older's id: a replica that already counted it (a publish that failed
// only in part) counts the merge as that one, never twice.
func (q hintQueue) add(h *pb.SubscriptionHint) {
	hs := q[h.GetSubscription()]
	if len(hs) == maxQueuedHints {
		hs[1] = &pb.SubscriptionHint{Id: hs[0].GetId(), Subscription: hs[0].GetSubscription(),
			Messages: satAdd(hs[0].GetMessages(), hs[1].GetMessages()), AtUnixNano: hs[0].GetAtUnixNano()}
		hs = hs[1:]
	}
	q[h.GetSubscription()] = append(hs, h)
}

// take removes up to limit hints, a subscription's all or none, and says
// how many more the limit leaves.
func (q hintQueue) take(limit int) ([]*pb.SubscriptionHint, int) {
	var out []*pb.SubscriptionHint
	for sub, hs := range q {
		if limit < len(hs) {
			break
		}
		out = append(out, hs...)
		delete(q, sub)
		limit -= len(hs)
	}
	return out, limit
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// queued says whether anything waits to be published. The caller holds
// r.mu.
func (r *Replicator) queued() bool { return r.pendingLocked() > 0 }

// pendingLocked is how many items wait to be published, every kind's
// and the hints. The caller holds r.mu.
func (r *Replicator) pendingLocked() int {
	n := len(r.hints)
	for _, k := range r.ks.list {
		n += k.pending()
	}
	return n
}

// takeLocked removes and returns up to limit items, the kinds in the
// order registered, then hints. The caller holds r.mu.
func (r *Replicator) takeLocked(limit int) pending {
	var p pending
	for _, k := range r.ks.list {
		var b batch
		b, limit = k.take(limit)
		if b.len() > 0 {
			p.batches = append(p.batches, b)
		}
	}
	p.hints, _ = r.hints.take(limit)
	return p
}

// putBackLocked queues p again after a failed publish, under what was
// queued meanwhile (newer values win). The caller holds r.mu.
func (r *Replicator) putBackLocked(p pending) {
	for _, b := range p.batches {
		b.putBack()
	}
	for _, h := range p.hints {
		r.hints.add(h)
	}
}

// pending is what one publish carries.
type pending struct {
	batches []batch
	hints   []*pb.SubscriptionHint
}

func (p pending) empty() bool { return p.len() == 0 }

// len is how many items p carries.
func (p pending) len() int {
	n := len(p.hints)
	for _, b := range p.batches {
		n += b.len()
	}
	return n
}

// counts names how many items of each kind p carries, for a log line.
func (p pending) counts() []any {
	var out []any
	for _, b := range p.batches {
		out = append(out, b.name(), b.len())
	}
	return append(out, "hints", len(p.hints))
}

// messages packs p into messages of at most maxBatch items of each kind
// and about maxMessageBytes each.
func (p pending) messages(replica string) []*pb.ChangeBatch {
	var f filler
	f.replica = replica
	for _, b := range p.batches {
		b.encode(&f)
	}
	for _, h := range p.hints {
		fitIn(&f, h, func(m *pb.ChangeBatch) *[]*pb.SubscriptionHint { return &m.Hints })
	}
	return f.msgs
}

// filler fills messages one item at a time, starting a new one when the
// item's kind has maxBatch or the bytes would pass maxMessageBytes.
type filler struct {
	replica string
	msgs    []*pb.ChangeBatch
	bytes   int
}

func (f *filler) start() *pb.ChangeBatch {
	m := &pb.ChangeBatch{Replica: f.replica}
	f.msgs, f.bytes = append(f.msgs, m), 0
	return m
}

func fitIn[T proto.Message](f *filler, item T, field func(*pb.ChangeBatch) *[]T) {
	size := proto.Size(item) + 8 // the field's tag and length
	var m *pb.ChangeBatch
	if len(f.msgs) > 0 {
		m = f.msgs[len(f.msgs)-1]
	}
	if m == nil || len(*field(m)) >= maxBatch || (f.bytes > 0 && f.bytes+size > maxMessageBytes) {
		m = f.start()
	}
	*field(m) = append(*field(m), item)
	f.bytes += size
}
