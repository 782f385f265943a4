package replicated

import (
	"time"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/orgid"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
)

// Orgs is org changes: activity, settings with their stamps, deletes.
// Activity alone coalesces to the org's latest instant; a setting or a
// delete is queued as it is.
func Orgs() replication.Kind[activity.Change, *pb.OrgChange] {
	return replication.Kind[activity.Change, *pb.OrgChange]{
		Name: "orgs", Orgs: true,
		Key:      activityOnly,
		Coalesce: laterActivity,
		Encode:   encodeChange,
		Decode:   decodeChange,
		Batch:    func(m *pb.ChangeBatch) *[]*pb.OrgChange { return &m.Changes },
		Chunk:    func(m *pb.SnapshotResponse) *[]*pb.OrgChange { return &m.Changes },
		Hold:     holdChange,
		Org:      func(c activity.Change) string { return c.Org },
	}
}

// activityOnly keys a change that carries only activity by its org.
func activityOnly(c activity.Change) (any, bool) {
	if c.Deleted == 0 && c.ScaleToZero == nil && c.IdleWindow == nil && c.WarmSchedule == nil && c.PoolWeight == nil {
		return c.Org, true
	}
	return nil, false
}

func laterActivity(queued, next activity.Change) activity.Change {
	if next.Activity.After(queued.Activity) {
		return next
	}
	return queued
}

func encodeChange(c activity.Change) *pb.OrgChange {
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
	if c.PoolWeight != nil {
		oc.PoolWeight, oc.PoolWeightAt = c.PoolWeight, int64(c.PoolWeightAt)
	}
	return oc
}

func decodeChange(oc *pb.OrgChange) (activity.Change, bool) {
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
	if oc.PoolWeight != nil {
		v := oc.GetPoolWeight()
		c.PoolWeight, c.PoolWeightAt = &v, hlc.Stamp(oc.GetPoolWeightAt())
	}
	return c, true
}

// holdChange drops a change naming no valid org, or with a negative
// stamp, and holds its every stamp to limit, so a fast clock (or a
// forged MaxInt64) cannot keep an org warm, freeze a setting or overflow
// the hybrid logical clock.
func holdChange(c activity.Change, limit time.Time) (activity.Change, int, bool) {
	if !orgid.Valid(c.Org) {
		return c, 0, false
	}
	held := 0
	if c.Activity.After(limit) {
		c.Activity = limit
		held++
	}
	lim := hlc.Stamp(limit.UnixNano())
	for _, s := range []*hlc.Stamp{&c.ScaleToZeroAt, &c.IdleWindowAt, &c.WarmScheduleAt, &c.PoolWeightAt, &c.Deleted} {
		if *s > lim {
			*s = lim
			held++
		}
	}
	if c.Deleted < 0 || c.ScaleToZeroAt < 0 || c.IdleWindowAt < 0 || c.WarmScheduleAt < 0 || c.PoolWeightAt < 0 {
		return c, held, false
	}
	return c, held, true
}

// orgStore is the org store as replication's Local: other replicas'
// changes merge with Apply, and it knows which orgs it holds or has
// deleted.
type orgStore struct{ *activity.Store }

func (s orgStore) Merge(cs []activity.Change) error { return s.Apply(cs) }
