package scaler

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/trigger"
)

// Pools seats the members of GPU pools; pool.Loop provides it. The
// answers only read it: its loop does the work.
type Pools interface {
	Lookup(name string) (pool.Config, bool)
	Seat(name, id string) (pool.Seat, int, bool)
	Changed(name string) <-chan struct{}
	Turned() <-chan struct{}
}

// Targets lists the cluster's triggers (with their ScaledObjects' replica
// bounds); scaledobjects.Registry provides it. Without a cluster, a
// pool's members are the triggers KEDA asks about.
type Targets interface {
	Targets(org string) []scaledobjects.Target
}

// polledFor is how long a trigger KEDA asked about stays in its pool
// without being asked again (without a cluster): three of KEDA's default
// polling intervals.
const polledFor = 90 * time.Second

// polled is a pooled trigger KEDA asked about, with no cluster to list
// it: when it was last asked, and how many streams hold it. Updated on
// every pooled call, so without a lock.
type polled struct {
	w       atomic.Pointer[trigger.Workload]
	last    atomic.Int64 // Unix nanoseconds
	streams atomic.Int32
}

// members are the pooled triggers KEDA asked about, by member ID; used
// only without a cluster, bounded by MaxScaledObjects.
type members struct {
	m sync.Map // member ID → *polled
	n atomic.Int64
}

// saw notes that KEDA asked about member id (stream: +1 when a stream
// opens, -1 when it closes); false when id is new and the most members
// are kept already.
func (ms *members) saw(id string, w trigger.Workload, now time.Time, stream int) bool {
	v, ok := ms.m.Load(id)
	if !ok {
		if stream < 0 {
			return true
		}
		if ms.n.Load() >= MaxScaledObjects {
			return false
		}
		fresh := &polled{} // whole before others see it
		fresh.w.Store(&w)
		fresh.last.Store(now.UnixNano())
		var loaded bool
		if v, loaded = ms.m.LoadOrStore(id, fresh); !loaded {
			ms.n.Add(1)
		}
	}
	p := v.(*polled)
	if old := p.w.Load(); old == nil || *old != w {
		p.w.Store(&w)
	}
	p.last.Store(now.UnixNano())
	p.streams.Add(int32(stream))
	return true
}

// list returns the members asked about within polledFor (or held by a
// stream), and forgets the rest.
func (ms *members) list(now time.Time) []scaledobjects.Target {
	var out []scaledobjects.Target
	ms.m.Range(func(k, v any) bool {
		id, p := k.(string), v.(*polled)
		if p.streams.Load() <= 0 && now.Sub(time.Unix(0, p.last.Load())) > polledFor {
			if ms.m.CompareAndDelete(id, p) {
				ms.n.Add(-1)
			}
			return true
		}
		object, _ := pool.SplitID(id)
		ns, name := splitObject(object)
		out = append(out, scaledobjects.Target{Key: scaledobjects.Key{Namespace: ns, Name: name}, Workload: *p.w.Load()})
		return true
	})
	return out
}

func splitObject(object string) (ns, name string) {
	for i := range len(object) {
		if object[i] == '/' {
			return object[:i], object[i+1:]
		}
	}
	return "", object
}

// pooled caps a, the answer for w of the ScaledObject namespace/name, by
// w's seat in its pool (seatOf). A request that names no ScaledObject
// (scalerctl ask) is no member: its answer is not capped.
func (s *Server) pooled(ctx context.Context, namespace, name string, w trigger.Workload, a decide.Answer) (decide.Answer, error) {
	if w.Pool == "" || namespace == "" || name == "" {
		return a, nil
	}
	seat, waiting, err := s.seatOf(ctx, namespace, name, w)
	if err != nil {
		return a, err
	}
	return seated(a, w, seat, waiting), nil
}

// seated is a capped by seat, of waiting members in w's pool.
func seated(a decide.Answer, w trigger.Workload, seat pool.Seat, waiting int) decide.Answer {
	return decide.Pooled(a, decide.Seat{Pool: w.Pool, Share: seat.Share, Queued: seat.Queued, Waiting: waiting})
}

// seatOf is the seat of w (of the ScaledObject namespace/name) at its
// pool's last turn, with how many members wait. A pool that does not
// exist is FailedPrecondition (KEDA's fallback applies); a new member is
// seated at the pool's next turn, and waited for (unless ctx is done) up
// to two turns, then Unavailable.
func (s *Server) seatOf(ctx context.Context, namespace, name string, w trigger.Workload) (pool.Seat, int, error) {
	if err := s.poolExists(w); err != nil {
		return pool.Seat{}, 0, err
	}
	id := pool.ID(namespace, name, w.MetricName())
	if s.targets == nil && !s.polled.saw(id, w, s.now(), 0) {
		return pool.Seat{}, 0, status.Errorf(codes.ResourceExhausted, "pool %s: the scaler keeps at most %d pooled triggers it was asked about; this one is not seated", w.Pool, MaxScaledObjects)
	}
	for turns := 0; ; turns++ {
		if seat, waiting, ok := s.pools.Seat(w.Pool, id); ok {
			return seat, waiting, nil
		}
		if turns == 2 {
			break
		}
		select { // a new member: seated at the pool's next turn
		case <-s.pools.Turned():
		case <-ctx.Done():
			return pool.Seat{}, 0, status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return pool.Seat{}, 0, status.Error(codes.Unavailable, "the scaler is stopping")
		}
	}
	return pool.Seat{}, 0, status.Errorf(codes.Unavailable, "pool %s has not seated this trigger yet: it is seated at the pool's next turn; retry", w.Pool)
}

// poolExists is FailedPrecondition when w names a pool that is not
// defined.
func (s *Server) poolExists(w trigger.Workload) error {
	if w.Pool == "" {
		return nil
	}
	if s.pools == nil {
		return status.Errorf(codes.FailedPrecondition, "metadata %q is %q: this scaler keeps no GPU pools", trigger.KeyPool, w.Pool)
	}
	if _, ok := s.pools.Lookup(w.Pool); !ok {
		return status.Errorf(codes.FailedPrecondition, "metadata %q is %q: no such pool; create it with scalerctl pool set %s --gpus N", trigger.KeyPool, w.Pool, w.Pool)
	}
	return nil
}

// PoolWants gathers every pool's members at now, for the pools' loop:
// the cluster's triggers that name a pool (or, without a cluster, those
// KEDA asked about), each with the replicas it would get without its
// pool (bounded by its maxReplicaCount), its org's weight and whether
// work waits in its queue. A member whose backlog cannot be seen keeps
// the demand it last had; one that cannot be answered at all asks for
// nothing.
func (s *Server) PoolWants(now time.Time) map[string][]pool.Want {
	var targets []scaledobjects.Target
	if s.targets != nil {
		targets = s.targets.Targets("")
	} else {
		targets = s.polled.list(now)
	}
	out := map[string][]pool.Want{}
	seen := make(map[string]bool, len(targets))
	for _, tg := range targets {
		w := tg.Workload
		if w.Pool == "" {
			continue
		}
		id := pool.ID(tg.Key.Namespace, tg.Key.Name, w.MetricName())
		seen[id] = true
		out[w.Pool] = append(out[w.Pool], s.want(id, tg, now))
	}
	s.demandMu.Lock()
	for id := range s.demands {
		if !seen[id] {
			delete(s.demands, id)
		}
	}
	s.demandMu.Unlock()
	return out
}

// want is one member's ask at now.
func (s *Server) want(id string, tg scaledobjects.Target, now time.Time) pool.Want {
	w := tg.Workload
	m := pool.Want{Member: pool.Member{ID: id, Org: w.Org, Weight: 1, GPUs: w.GPUsPerReplica, Min: int64(tg.Min)}}
	a, o, d, err := s.evaluateAt(w, now)
	if w.Org != "" && err == nil {
		m.Weight = max(o.PoolWeight, 1)
	}
	s.demandMu.Lock()
	defer s.demandMu.Unlock()
	switch {
	case err != nil:
		m.Demand = 0
	case a.Blind():
		m.Demand = s.demands[id] // not seen: what it last asked
	case a.Active:
		m.Demand = max(a.Replicas, 1)
	}
	if tg.Max > 0 {
		m.Demand = min(m.Demand, int64(tg.Max))
	}
	s.demands[id] = m.Demand
	m.Backlog = err == nil && backlogged(w, d)
	return m
}

// backlogged reports whether work waits in w's queue.
func backlogged(w trigger.Workload, d pubsubdepth.Depth) bool {
	return w.Subscription != "" && d.Known && d.Messages > w.ActivationBacklog
}
