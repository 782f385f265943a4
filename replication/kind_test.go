package replication

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// mark is the test kinds' item: an org and a number that only grows.
type mark struct {
	org string
	n   int64
}

// marks is a test Local: the greatest n per org.
type marks struct {
	mu sync.Mutex
	m  map[string]int64
}

func (s *marks) Merge(ms []mark) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]int64{}
	}
	for _, m := range ms {
		s.m[m.org] = max(s.m[m.org], m.n)
	}
	return nil
}

func (s *marks) Export(send func([]mark) error) error {
	s.mu.Lock()
	var out []mark
	for org, n := range s.m {
		out = append(out, mark{org, n})
	}
	s.mu.Unlock()
	return send(out)
}

func (s *marks) Known(org string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[org]
	return ok
}

func (s *marks) get(org string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.m[org]
	return n, ok
}

// orgMarks is a test Orgs kind over OrgChange: marks of one org coalesce
// to the greatest, a negative one is queued by itself, and a mark further
// ahead than the skew bound (as a Unix nanosecond) is held to it.
func orgMarks() Kind[mark, *pb.OrgChange] {
	return Kind[mark, *pb.OrgChange]{
		Name: "orgs", Orgs: true,
		Key: func(m mark) (any, bool) { return m.org, m.n >= 0 },
		Coalesce: func(q, n mark) mark {
			if n.n > q.n {
				return n
			}
			return q
		},
		Encode: func(m mark) *pb.OrgChange { return &pb.OrgChange{Org: m.org, ActivityUnixNano: m.n} },
		Decode: func(c *pb.OrgChange) (mark, bool) { return mark{c.GetOrg(), c.GetActivityUnixNano()}, true },
		Batch:  func(m *pb.ChangeBatch) *[]*pb.OrgChange { return &m.Changes },
		Chunk:  func(m *pb.SnapshotResponse) *[]*pb.OrgChange { return &m.Changes },
		Hold: func(m mark, limit time.Time) (mark, int, bool) {
			if m.org == "" {
				return m, 0, false
			}
			if m.n > limit.UnixNano() {
				return mark{m.org, limit.UnixNano()}, 1, true
			}
			return m, 0, true
		},
		Org: func(m mark) string { return m.org },
	}
}

// dayMarks is a test kind of an org's other state, over ActivityDay: the
// latest per org replaces the queued one (no Coalesce), and it counts for
// its org (early until the org is known).
func dayMarks() Kind[mark, *pb.ActivityDay] {
	return Kind[mark, *pb.ActivityDay]{
		Name:   "days",
		Key:    func(m mark) (any, bool) { return m.org, true },
		Encode: func(m mark) *pb.ActivityDay { return &pb.ActivityDay{Org: m.org, DayUnix: m.n} },
		Decode: func(d *pb.ActivityDay) (mark, bool) { return mark{d.GetOrg(), d.GetDayUnix()}, d.GetDayUnix() >= 0 },
		Batch:  func(m *pb.ChangeBatch) *[]*pb.ActivityDay { return &m.History },
		Chunk:  func(m *pb.SnapshotResponse) *[]*pb.ActivityDay { return &m.History },
		Org:    func(m mark) string { return m.org },
	}
}

// testReplicator is a Replicator with the two test kinds registered and
// served, and no transport (the tests call take, apply and the like).
func testReplicator(now time.Time) (*Replicator, *Outbox[mark, *pb.OrgChange], *Outbox[mark, *pb.ActivityDay], *marks, *marks) {
	ks := NewKinds(func() time.Time { return now }, time.Second)
	r := &Replicator{opts: Options{Replica: "r0", MaxSkew: time.Second}, hints: hintQueue{}, published: make(chan struct{}),
		kick: make(chan struct{}, 1), m: newMetrics(nil), now: func() time.Time { return now }, ks: ks}
	ks.queue = r.queue
	days := Register(ks, dayMarks())
	orgs := Register(ks, orgMarks()) // registered second, applied first
	var o, d marks
	orgs.Serve(&o)
	days.Serve(&d)
	return r, orgs, days, &o, &d
}

// Queued items of one key coalesce (by Coalesce, or to the latest); a
// failed publish puts its items back under the ones queued meanwhile;
// items without a key are queued one by one.
func TestQueueCoalesces(t *testing.T) {
	r, orgs, days, _, _ := testReplicator(time.Now())
	orgs.EnqueueAll([]mark{{"acme", 5}, {"acme", 3}, {"acme", -1}, {"acme", -2}})
	days.Enqueue(mark{"acme", 1})
	days.Enqueue(mark{"acme", 2})
	_, p := r.take()
	if got := taken(p); !slices.Equal(got["orgs"], []int64{-2, -1, 5}) || !slices.Equal(got["days"], []int64{2}) {
		t.Fatalf("took %v; want orgs [-2 -1 5] (5 the greatest, the unkeyed two as they are) and days [2] (the latest)", got)
	}
	orgs.Enqueue(mark{"acme", 4}) // while the publish is failing
	days.Enqueue(mark{"acme", 1})
	r.requeue(p, nil)
	_, again := r.take()
	if got := taken(again); !slices.Equal(got["orgs"], []int64{-2, -1, 5}) || !slices.Equal(got["days"], []int64{1}) {
		t.Fatalf("after the requeue took %v; want orgs [-2 -1 5] (5 coalesced with 4) and days [1] (queued meanwhile, so newer)", got)
	}
	if r.queued() {
		t.Fatal("something still queued after taking all")
	}
}

func taken(p pending) map[string][]int64 {
	out := map[string][]int64{}
	for _, b := range p.batches {
		for _, m := range b.(interface{ marks() []mark }).marks() {
			out[b.name()] = append(out[b.name()], m.n)
		}
	}
	for _, ns := range out {
		slices.Sort(ns)
	}
	return out
}

func (b *items[T, M]) marks() []mark {
	var out []mark
	for _, it := range b.list {
		out = append(out, any(it).(mark))
	}
	return out
}

// A message applies the Orgs kind first, whatever the order registered;
// stamps are held to the skew bound and items naming no org dropped; an
// item of an org not known here yet makes the message early, after what
// could be applied was.
func TestApplyHoldsAndWaits(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r, _, _, orgs, days := testReplicator(now)
	far := now.Add(time.Hour).UnixNano()
	a, err := r.ks.apply(carrier{batch: &pb.ChangeBatch{
		History: []*pb.ActivityDay{{Org: "acme", DayUnix: 7}, {Org: "later", DayUnix: 8}},
		Changes: []*pb.OrgChange{{Org: "acme", ActivityUnixNano: far}, {Org: "", ActivityUnixNano: 1}},
	}}, nil, nil)
	if !errors.Is(err, errEarly) || a.early != "later" {
		t.Fatalf("apply: %v (early %q); want errEarly naming later", err, a.early)
	}
	if a.held != 1 || a.dropped != 1 || a.items != 3 {
		t.Fatalf("applied %+v; want 3 items, 1 held, 1 dropped", a)
	}
	if n, _ := orgs.get("acme"); n != now.Add(time.Second).UnixNano() {
		t.Fatalf("acme's mark %d; want it held to now + 1s", n)
	}
	if n, ok := days.get("acme"); !ok || n != 7 {
		t.Fatalf("acme's day %d, %v; want 7 (its org was applied first)", n, ok)
	}
	if _, err := r.ks.apply(carrier{batch: &pb.ChangeBatch{Changes: []*pb.OrgChange{{Org: "later", ActivityUnixNano: 1}}}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ks.apply(carrier{batch: &pb.ChangeBatch{History: []*pb.ActivityDay{{Org: "later", DayUnix: 8}}}}, nil, nil); err != nil {
		t.Fatalf("the redelivered message, its org known now: %v", err)
	}
}

// The stall the lag alert reads counts only while items wait and no
// publish succeeds: a busy replica, always with a few items queued behind
// the publish in flight, shows none.
func TestStalledOnlyWithoutProgress(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	clock := t0
	r, orgs, _, _, _ := testReplicator(t0)
	r.now = func() time.Time { return clock }
	if d := r.stalledFor(); d != 0 {
		t.Fatalf("nothing queued: stalled %s", d)
	}
	orgs.Enqueue(mark{"acme", 1})
	clock = t0.Add(10 * time.Minute)
	if d := r.stalledFor(); d != 10*time.Minute {
		t.Fatalf("queued 10m ago, nothing published: stalled %s; want 10m", d)
	}
	seq, _ := r.take()
	orgs.Enqueue(mark{"acme", 2}) // queued while the publish is in flight
	r.confirm(seq)
	clock = clock.Add(time.Second)
	if d := r.stalledFor(); d != time.Second {
		t.Fatalf("a publish went through 1s ago, one item queued behind it: stalled %s; want 1s", d)
	}
}
