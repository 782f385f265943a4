package replicated

import (
	"time"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/pools"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
)

// Pools is the GPU pools' definitions, whole: the latest set or delete of
// each pool is queued. They belong to no org.
func Pools() replication.Kind[pools.Pool, *pb.PoolDef] {
	return replication.Kind[pools.Pool, *pb.PoolDef]{
		Name:   "pools",
		Key:    func(p pools.Pool) (any, bool) { return p.Name, true },
		Encode: pools.Encode,
		Decode: pools.Decode,
		Batch:  func(m *pb.ChangeBatch) *[]*pb.PoolDef { return &m.Pools },
		Chunk:  func(m *pb.SnapshotResponse) *[]*pb.PoolDef { return &m.Pools },
		Hold:   holdPool,
	}
}

// holdPool holds a definition's stamp to limit, so a fast clock cannot
// make its set win over every later one.
func holdPool(p pools.Pool, limit time.Time) (pools.Pool, int, bool) {
	if lim := hlc.Stamp(limit.UnixNano()); p.At > lim {
		p.At = lim
		return p, 1, true
	}
	return p, 0, true
}
