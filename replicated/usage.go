package replicated

import (
	"time"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/usage"
)

// Hours is the fleet's GPU-hours ledger, counted by the leader: the
// latest per hour, workload and term is queued (the ledger hands its
// flushes over in order). Only a joining replica asks a snapshot for
// them; the log carries each hour.
func Hours() replication.Kind[usage.Hour, *pb.UsageHour] {
	type key struct {
		hour     int64
		id, term string
	}
	return replication.Kind[usage.Hour, *pb.UsageHour]{
		Name: "usage", JoinOnly: true,
		Key:    func(h usage.Hour) (any, bool) { return key{h.Start.Unix(), h.ID, h.Term}, true },
		Encode: encodeHour,
		Decode: decodeHour,
		Batch:  func(m *pb.ChangeBatch) *[]*pb.UsageHour { return &m.Usage },
		Chunk:  func(m *pb.SnapshotResponse) *[]*pb.UsageHour { return &m.Usage },
	}
}

func encodeHour(h usage.Hour) *pb.UsageHour {
	so, metric := usage.SplitID(h.ID)
	f := h.Figures
	return &pb.UsageHour{HourUnix: h.Start.Unix(), ScaledObject: so, Metric: metric, Kind: f.Kind, Org: f.Org, GpusPerReplica: f.GPUs,
		TrackedMs: f.Tracked.Milliseconds(), ActiveMs: f.Active.Milliseconds(), ReplicaMs: f.ReplicaTime.Milliseconds(),
		AlwaysOnReplicaMs: f.AlwaysOnReplica.Milliseconds(), GpuMs: f.GPUTime.Milliseconds(), AlwaysOnGpuMs: f.AlwaysOnGPU.Milliseconds(),
		Wakes: f.Wakes[:], Term: h.Term, GpuType: f.GPUType}
}

func decodeHour(u *pb.UsageHour) (usage.Hour, bool) {
	ms := func(v int64) time.Duration { return time.Duration(max(0, v)) * time.Millisecond }
	f := usage.Figures{Kind: u.GetKind(), Org: u.GetOrg(), GPUs: u.GetGpusPerReplica(), GPUType: u.GetGpuType(),
		Tracked: ms(u.GetTrackedMs()), Active: ms(u.GetActiveMs()), ReplicaTime: ms(u.GetReplicaMs()),
		AlwaysOnReplica: ms(u.GetAlwaysOnReplicaMs()), GPUTime: ms(u.GetGpuMs()), AlwaysOnGPU: ms(u.GetAlwaysOnGpuMs())}
	copy(f.Wakes[:], u.GetWakes())
	return usage.Hour{Start: time.Unix(u.GetHourUnix(), 0).UTC(), ID: usage.ID(u.GetScaledObject(), u.GetMetric()), Term: u.GetTerm(), Figures: f}, true
}
