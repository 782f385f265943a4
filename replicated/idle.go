package replicated

import (
	"github.com/orgscaler/orgscaler/idletimes"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
)

// IdleTimes is each replica's idle-time counts per org (and the fleet's,
// org ""): the latest per org and replica is queued.
func IdleTimes() replication.Kind[idletimes.Counts, *pb.IdleCounts] {
	return replication.Kind[idletimes.Counts, *pb.IdleCounts]{
		Name:   "idle_times",
		Key:    func(c idletimes.Counts) (any, bool) { return [2]string{c.Org, c.Replica}, true },
		Encode: encodeCounts,
		Decode: decodeCounts,
		Batch:  func(m *pb.ChangeBatch) *[]*pb.IdleCounts { return &m.IdleTimes },
		Chunk:  func(m *pb.SnapshotResponse) *[]*pb.IdleCounts { return &m.IdleTimes },
		Org:    func(c idletimes.Counts) string { return c.Org },
	}
}

func encodeCounts(c idletimes.Counts) *pb.IdleCounts {
	m := &pb.IdleCounts{Org: c.Org, Replica: c.Replica, Over: c.History.Over}
	for k, n := range c.History.Bins {
		if n > 0 {
			m.Bins, m.Counts = append(m.Bins, uint32(k)), append(m.Counts, n)
		}
	}
	return m
}

// decodeCounts reads counts; bins out of range, or without a count, are
// dropped (a newer replica's wider histogram, or a damaged message).
func decodeCounts(m *pb.IdleCounts) (idletimes.Counts, bool) {
	c := idletimes.Counts{Org: m.GetOrg(), Replica: m.GetReplica()}
	c.History.Over = m.GetOver()
	counts := m.GetCounts()
	for i, k := range m.GetBins() {
		if i < len(counts) && int(k) < len(c.History.Bins) {
			c.History.Bins[k] = counts[i]
		}
	}
	return c, true
}

// idleStore is the idle-time store as replication's Local.
type idleStore struct{ *idletimes.Store }

func (s idleStore) Merge(cs []idletimes.Counts) error {
	for _, c := range cs {
		if err := s.Store.Merge(c); err != nil {
			return err
		}
	}
	return nil
}
