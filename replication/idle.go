package replication

import (
	"github.com/orgscaler/orgscaler/idletimes"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// IdleTimes is where other replicas' idle-time counts go;
// idletimes.Store provides it.
type IdleTimes interface {
	Merge(idletimes.Counts) error
	Export(func([]idletimes.Counts) error) error
}

type idleKey struct{ org, replica string }

func idleKeyOf(c idletimes.Counts) idleKey { return idleKey{c.Org, c.Replica} }

// EnqueueIdle queues this replica's counts for an org (or the fleet) that
// grew: idletimes.Store's OnChange.
func (r *Replicator) EnqueueIdle(c idletimes.Counts) {
	r.queue(func() { r.q.idle.put(idleKeyOf(c), c) })
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
