// Package replicated says how each store's state travels between
// replicas: for org changes, GPU-hours ledger hours, idle-time counts,
// activity-history days and GPU pools' definitions, how queued items
// coalesce, their wire form, and which are held or dropped on the way in. Package replication carries
// the kinds and knows none of the stores; the stores know nothing of
// either. Adding a replicated kind is one file here and one line in
// Register.
package replicated

import (
	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/idletimes"
	"github.com/orgscaler/orgscaler/pools"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/usage"
)

// Outboxes are the stores' way onto the replication topic: each is a
// store's OnChange (or the ledger's OnFlush). Without publish, or nil,
// they replicate nothing: every On* is nil.
type Outboxes struct {
	publish bool
	orgs    *replication.Outbox[activity.Change, *pb.OrgChange]
	idle    *replication.Outbox[idletimes.Counts, *pb.IdleCounts]
	days    *replication.Outbox[history.Day, *pb.ActivityDay]
	hours   *replication.Outbox[usage.Hour, *pb.UsageHour] // nil: the ledger is each replica's own
	pools   *replication.Outbox[pools.Pool, *pb.PoolDef]
}

// Register registers every kind on ks before the stores open, the
// ledger's hours only when ledger is set (one replica, or a fleet whose
// leader counts them for all), and with publish (a Replicator carries ks)
// the outboxes are the stores' OnChange. Serve then gives each kind its
// store. Org changes register first: a message applies them before the
// rest, and a snapshot (a backup) sends them first.
func Register(ks *replication.Kinds, ledger, publish bool) *Outboxes {
	o := &Outboxes{
		publish: publish,
		orgs:    replication.Register(ks, Orgs()),
		idle:    replication.Register(ks, IdleTimes()),
		days:    replication.Register(ks, Days()),
		pools:   replication.Register(ks, Pools()),
	}
	if ledger {
		o.hours = replication.Register(ks, Hours())
	}
	return o
}

// Serve gives each registered kind its store: where other replicas'
// items go, and what a snapshot holds.
func (o *Outboxes) Serve(orgs *activity.Store, idle *idletimes.Store, days *history.Store, ledger *usage.Ledger, defs *pools.Store) {
	if o == nil {
		return
	}
	o.pools.Serve(defs)
	o.orgs.Serve(orgStore{orgs})
	o.idle.Serve(idleStore{idle})
	o.days.Serve(days)
	if o.hours != nil {
		o.hours.Serve(ledger)
	}
}

// OnChange is activity.Options.OnChange: an org change made here.
func (o *Outboxes) OnChange() func(activity.Change) {
	if o == nil || !o.publish {
		return nil
	}
	return o.orgs.Enqueue
}

// OnIdle is idletimes.Options.OnChange: counts that grew here.
func (o *Outboxes) OnIdle() func(idletimes.Counts) {
	if o == nil || !o.publish {
		return nil
	}
	return o.idle.Enqueue
}

// OnDay is history.Options.OnChange: a day that gained minutes here.
func (o *Outboxes) OnDay() func(history.Day) {
	if o == nil || !o.publish {
		return nil
	}
	return o.days.Enqueue
}

// OnPool is pools.Options.OnChange: a pool set or deleted here.
func (o *Outboxes) OnPool() func(pools.Pool) {
	if o == nil || !o.publish {
		return nil
	}
	return o.pools.Enqueue
}

// OnFlush is usage.Options.OnFlush: the leader's hours, in order. Nil
// when the ledger is not replicated.
func (o *Outboxes) OnFlush() func([]usage.Hour) {
	if o == nil || !o.publish || o.hours == nil {
		return nil
	}
	return o.hours.EnqueueAll
}
