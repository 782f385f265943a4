package replication

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/hlc"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/usage"
)

// ToProto is changes as replicas send them.
func ToProto(changes []activity.Change) []*pb.OrgChange {
	out := make([]*pb.OrgChange, len(changes))
	for i, c := range changes {
		oc := &pb.OrgChange{Org: c.Org, DeletedAt: int64(c.Deleted)}
		if !c.Activity.IsZero() {
			oc.ActivityUnixNano = c.Activity.UnixNano()
		}
		if c.ScaleToZero != nil {
			oc.ScaleToZeroAllowed, oc.ScaleToZeroAllowedAt = c.ScaleToZero, int64(c.ScaleToZeroAt)
		}
		if c.IdleWindow != nil {
			n := int64(*c.IdleWindow)
			oc.IdleWindowNanos, oc.IdleWindowAt = &n, int64(c.IdleWindowAt)
		}
		if c.WarmSchedule != nil {
			oc.WarmSchedule, oc.WarmScheduleAt = c.WarmSchedule, int64(c.WarmScheduleAt)
		}
		out[i] = oc
	}
	return out
}

func fromProto(in []*pb.OrgChange) []activity.Change {
	out := make([]activity.Change, 0, len(in))
	for _, oc := range in {
		c := activity.Change{Org: oc.GetOrg(), Deleted: hlc.Stamp(oc.GetDeletedAt())}
		if n := oc.GetActivityUnixNano(); n != 0 {
			c.Activity = time.Unix(0, n).UTC()
		}
		if oc.ScaleToZeroAllowed != nil {
			v := oc.GetScaleToZeroAllowed()
			c.ScaleToZero, c.ScaleToZeroAt = &v, hlc.Stamp(oc.GetScaleToZeroAllowedAt())
		}
		if oc.IdleWindowNanos != nil {
			d := time.Duration(max(0, oc.GetIdleWindowNanos()))
			c.IdleWindow, c.IdleWindowAt = &d, hlc.Stamp(oc.GetIdleWindowAt())
		}
		if oc.WarmSchedule != nil {
			v := oc.GetWarmSchedule()
			c.WarmSchedule, c.WarmScheduleAt = &v, hlc.Stamp(oc.GetWarmScheduleAt())
		}
		out = append(out, c)
	}
	return out
}

type metrics struct {
	published, applied, publishErrors, held prometheus.Counter
	rejected                                *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published:     prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_replication_published_changes_total", Help: "Org changes this replica published to the replication topic."}),
		applied:       prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_replication_applied_changes_total", Help: "Org changes from other replicas applied here."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_replication_publish_errors_total", Help: "Publishes to the replication topic that failed (and were retried)."}),
		held: prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_replication_stamps_held_total",
			Help: "Stamps from other replicas further ahead than --max-clock-skew, held to it (a replica's clock is ahead)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orgscaler_replication_rejected_total",
			Help: "Replication messages or changes dropped, by reason: unauthenticated (no valid signature), undecodable, invalid (naming no valid org)."}, []string{"reason"}),
	}
	for _, r := range []string{"unauthenticated", "undecodable", "invalid"} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.published, m.applied, m.publishErrors, m.held, m.rejected)
	}
	return m
}

// usageToProto is ledger hours as replicas send them.
func usageToProto(hours []usage.Hour) []*pb.UsageHour {
	out := make([]*pb.UsageHour, len(hours))
	for i, h := range hours {
		so, metric := usage.SplitID(h.ID)
		f := h.Figures
		out[i] = &pb.UsageHour{HourUnix: h.Start.Unix(), ScaledObject: so, Metric: metric, Kind: f.Kind, Org: f.Org, GpusPerReplica: f.GPUs,
			TrackedMs: f.Tracked.Milliseconds(), ActiveMs: f.Active.Milliseconds(), ReplicaMs: f.ReplicaTime.Milliseconds(),
			AlwaysOnReplicaMs: f.AlwaysOnReplica.Milliseconds(), GpuMs: f.GPUTime.Milliseconds(), AlwaysOnGpuMs: f.AlwaysOnGPU.Milliseconds(),
			Wakes: f.Wakes[:], Term: h.Term}
	}
	return out
}

func usageFromProto(in []*pb.UsageHour) []usage.Hour {
	out := make([]usage.Hour, 0, len(in))
	ms := func(v int64) time.Duration { return time.Duration(max(0, v)) * time.Millisecond }
	for _, u := range in {
		f := usage.Figures{Kind: u.GetKind(), Org: u.GetOrg(), GPUs: u.GetGpusPerReplica(),
			Tracked: ms(u.GetTrackedMs()), Active: ms(u.GetActiveMs()), ReplicaTime: ms(u.GetReplicaMs()),
			AlwaysOnReplica: ms(u.GetAlwaysOnReplicaMs()), GPUTime: ms(u.GetGpuMs()), AlwaysOnGPU: ms(u.GetAlwaysOnGpuMs())}
		copy(f.Wakes[:], u.GetWakes())
		out = append(out, usage.Hour{Start: time.Unix(u.GetHourUnix(), 0).UTC(), ID: usage.ID(u.GetScaledObject(), u.GetMetric()), Term: u.GetTerm(), Figures: f})
	}
	return out
}
