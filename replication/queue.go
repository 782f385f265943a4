package replication

import (
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/idletimes"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/usage"
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

// queue is what waits to be published, coalesced: activity of an org to
// its latest instant, hours, counts and days to their latest value, hints
// per subscription to at most maxQueuedHints. Its owner locks it.
type queue struct {
	activity map[string]time.Time // the latest per org
	others   []activity.Change    // settings, creations by admins, deletes
	hints    map[string][]*pb.SubscriptionHint
	usage    latest[usageKey, usage.Hour]      // the latest per hour and workload
	idle     latest[idleKey, idletimes.Counts] // the latest per org and replica
	days     latest[dayKey, history.Day]       // the latest per org and day
}

func newQueue() queue {
	return queue{activity: map[string]time.Time{}, hints: map[string][]*pb.SubscriptionHint{},
		usage: latest[usageKey, usage.Hour]{}, idle: latest[idleKey, idletimes.Counts]{}, days: latest[dayKey, history.Day]{}}
}

// add queues c: activity alone coalesces to the org's latest instant.
func (q *queue) add(c activity.Change) {
	if c.Deleted == 0 && c.ScaleToZero == nil && c.IdleWindow == nil && c.WarmSchedule == nil {
		if c.Activity.After(q.activity[c.Org]) {
			q.activity[c.Org] = c.Activity
		}
		return
	}
	q.others = append(q.others, c)
}

// addHint queues h behind the hints queued for its subscription, merging
// the two oldest when there are maxQueuedHints. The merged hint keeps the
// older's id: a replica that already counted it (a publish that failed
// only in part) counts the merge as that one, never twice.
func (q *queue) addHint(h *pb.SubscriptionHint) {
	hs := q.hints[h.GetSubscription()]
	if len(hs) == maxQueuedHints {
		hs[1] = &pb.SubscriptionHint{Id: hs[0].GetId(), Subscription: hs[0].GetSubscription(),
			Messages: satAdd(hs[0].GetMessages(), hs[1].GetMessages()), AtUnixNano: hs[0].GetAtUnixNano()}
		hs = hs[1:]
	}
	q.hints[h.GetSubscription()] = append(hs, h)
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (q *queue) empty() bool {
	return len(q.activity) == 0 && len(q.others) == 0 && len(q.hints) == 0 && len(q.usage) == 0 && len(q.idle) == 0 && len(q.days) == 0
}

// take removes and returns up to limit items.
func (q *queue) take(limit int) pending {
	var p pending
	for org, at := range q.activity {
		if limit == 0 {
			break
		}
		p.changes = append(p.changes, activity.Change{Org: org, Activity: at})
		delete(q.activity, org)
		limit--
	}
	n := min(limit, len(q.others))
	p.changes = append(p.changes, q.others[:n]...)
	q.others, limit = q.others[n:], limit-n
	for sub, hs := range q.hints {
		if limit < len(hs) {
			break
		}
		p.hints = append(p.hints, hs...)
		delete(q.hints, sub)
		limit -= len(hs)
	}
	p.usage, limit = q.usage.drain(limit)
	p.idle, limit = q.idle.drain(limit)
	p.days, _ = q.days.drain(limit)
	return p
}

// putBack queues p again after a failed publish, under what was queued
// meanwhile (newer values win).
func (q *queue) putBack(p pending) {
	for _, c := range p.changes {
		q.add(c)
	}
	for _, h := range p.hints {
		q.addHint(h)
	}
	q.usage.putBack(p.usage, keyOf)
	q.idle.putBack(p.idle, idleKeyOf)
	q.days.putBack(p.days, dayKeyOf)
}

// pending is what one publish carries.
type pending struct {
	changes []activity.Change
	hints   []*pb.SubscriptionHint
	usage   []usage.Hour
	idle    []idletimes.Counts
	days    []history.Day
}

func (p pending) empty() bool {
	return len(p.changes) == 0 && len(p.hints) == 0 && len(p.usage) == 0 && len(p.idle) == 0 && len(p.days) == 0
}

// messages packs p into messages of at most maxBatch items of each kind
// and about maxMessageBytes each.
func (p pending) messages(replica string) []*pb.ChangeBatch {
	var f filler
	f.replica = replica
	for _, c := range ToProto(p.changes) {
		fitIn(&f, c, func(m *pb.ChangeBatch) *[]*pb.OrgChange { return &m.Changes })
	}
	for _, h := range p.hints {
		fitIn(&f, h, func(m *pb.ChangeBatch) *[]*pb.SubscriptionHint { return &m.Hints })
	}
	for _, h := range usageToProto(p.usage) {
		fitIn(&f, h, func(m *pb.ChangeBatch) *[]*pb.UsageHour { return &m.Usage })
	}
	for _, c := range idleToProto(p.idle) {
		fitIn(&f, c, func(m *pb.ChangeBatch) *[]*pb.IdleCounts { return &m.IdleTimes })
	}
	for _, d := range daysToProto(p.days) {
		fitIn(&f, d, func(m *pb.ChangeBatch) *[]*pb.ActivityDay { return &m.History })
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
