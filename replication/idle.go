package replication

import (
	"github.com/orgscaler/orgscaler/idletimes"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// IdleTimes is where other replicas' idle-time counts go;
// idletimes.Store provides it.
type IdleTimes interface {
	Merge(idletimes.Counts) error
}

// IdleExporter is every idle-time count a replica holds, for snapshots;
// idletimes.Store provides it.
type IdleExporter interface {
	Export() ([]idletimes.Counts, error)
}

type idleKey struct{ org, replica string }

// EnqueueIdle queues this replica's counts for an org (or the fleet) that
// grew: idletimes.Store's OnChange. Counts only grow, so the latest
// replaces what is queued for the same org.
func (r *Replicator) EnqueueIdle(c idletimes.Counts) {
	r.mu.Lock()
	r.idle[idleKey{c.Org, c.Replica}] = c
	r.enqueued++
	r.mu.Unlock()
	r.wake()
}

// requeueIdle puts back counts a failed publish carried, unless newer ones
// were queued meanwhile. Caller holds r.mu.
func (r *Replicator) requeueIdle(cs []idletimes.Counts) {
	for _, c := range cs {
		if _, newer := r.idle[idleKey{c.Org, c.Replica}]; !newer {
			r.idle[idleKey{c.Org, c.Replica}] = c
		}
	}
}

func idleToProto(cs []idletimes.Counts) []*pb.IdleCounts {
	out := make([]*pb.IdleCounts, len(cs))
	for i, c := range cs {
		m := &pb.IdleCounts{Org: c.Org, Replica: c.Replica, Over: c.History.Over}
		for k, n := range c.History.Bins {
			if n > 0 {
				m.Bins, m.Counts = append(m.Bins, uint32(k)), append(m.Counts, n)
			}
		}
		out[i] = m
	}
	return out
}

// idleFromProto reads counts; bins out of range, or without a count, are
// dropped (a newer replica's wider histogram, or a damaged message).
func idleFromProto(in []*pb.IdleCounts) []idletimes.Counts {
	out := make([]idletimes.Counts, 0, len(in))
	for _, m := range in {
		c := idletimes.Counts{Org: m.GetOrg(), Replica: m.GetReplica()}
		c.History.Over = m.GetOver()
		counts := m.GetCounts()
		for i, k := range m.GetBins() {
			if i < len(counts) && int(k) < len(c.History.Bins) {
				c.History.Bins[k] = counts[i]
			}
		}
		out = append(out, c)
	}
	return out
}

// mergeIdle applies counts to sink, if any.
func mergeIdle(sink IdleTimes, cs []idletimes.Counts) error {
	if sink == nil {
		return nil
	}
	for _, c := range cs {
		if err := sink.Merge(c); err != nil {
			return err
		}
	}
	return nil
}
