package activity

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/internal/watch"
	"github.com/orgscaler/orgscaler/schedule"
)

// Update holds the settings an admin may change; nil fields stay as they are.
type Update struct {
	ScaleToZeroAllowed *bool
	// IdleWindow > 0 sets the org's own window; 0 clears it.
	IdleWindow *time.Duration
	// WarmSchedule sets the org's warm schedule (schedule.Parse reads it;
	// "" clears it).
	WarmSchedule *string
	// PoolWeight sets the org's weight in GPU pools (1 to MaxPoolWeight).
	PoolWeight *int64
}

// Update changes org's settings, creating the org if it is new, and returns
// once the change is on disk. An org whose new settings keep it warm wakes.
func (s *Store) Update(ctx context.Context, id string, u Update) (Org, error) {
	if u.IdleWindow != nil && *u.IdleWindow < 0 {
		return Org{}, fmt.Errorf("idle window must be >= 0, got %s", *u.IdleWindow)
	}
	if u.PoolWeight != nil && (*u.PoolWeight < 1 || *u.PoolWeight > MaxPoolWeight) {
		return Org{}, fmt.Errorf("pool weight must be 1 to %d, got %d", MaxPoolWeight, *u.PoolWeight)
	}
	if u.WarmSchedule != nil {
		sched, err := schedule.Parse(*u.WarmSchedule)
		if err != nil {
			return Org{}, err
		}
		text := sched.String() // one spelling: every replica merges the same
		u.WarmSchedule = &text
	}
	if err := ctx.Err(); err != nil {
		return Org{}, err
	}
	s.writeMu.Lock() // no flush can write this org between our write and our apply
	defer s.writeMu.Unlock()
	now := s.opts.Now()
	c := u.change(id, s.clock.Now())
	sh := s.shard(id)
	sh.mu.Lock()
	e, created := s.getOrCreate(sh, id, now)
	if created {
		c.Activity = e.rec.LastActivity.Time() // other replicas create it as this one did
	}
	rec := e.rec
	mergeSettings(&rec, c, sh.tombs[id])
	s.settle(&rec, now)
	sh.mu.Unlock()
	// Written and synced with no lock an answer takes: KEDA's calls about
	// this org go on from memory meanwhile, and see the change once it is
	// on disk.
	if err := s.write([]pending{{id, rec.marshal()}}, false); err != nil {
		return Org{}, err // memory unchanged: the change is not in force
	}
	if err := s.sync(); err != nil {
		return Org{}, fmt.Errorf("sync data dir: %w", err)
	}
	o := s.applyUpdate(sh, id, c, rec, now)
	s.changed(c)
	return o, nil
}

// change is u as a Change written at at.
func (u Update) change(id string, at hlc.Stamp) Change {
	c := Change{Org: id}
	if u.ScaleToZeroAllowed != nil {
		c.ScaleToZero, c.ScaleToZeroAt = u.ScaleToZeroAllowed, at
	}
	if u.IdleWindow != nil {
		c.IdleWindow, c.IdleWindowAt = u.IdleWindow, at
	}
	if u.WarmSchedule != nil {
		c.WarmSchedule, c.WarmScheduleAt = u.WarmSchedule, at
	}
	if u.PoolWeight != nil {
		c.PoolWeight, c.PoolWeightAt = u.PoolWeight, at
	}
	return c
}

// applyUpdate puts u's settings, now on disk as written, in force in
// memory. Activity that came during the write is kept (and written by the
// next flush).
func (s *Store) applyUpdate(sh *shard, id string, c Change, written record, now time.Time) Org {
	sh.mu.Lock()
	e := sh.orgs[id]
	before := e.rec
	rec := e.rec
	mergeSettings(&rec, c, sh.tombs[id])
	woke, slept, next := s.settle(&rec, now)
	if from, to := stateOf(e.rec), stateOf(rec); from != to {
		s.metrics.moved(from, to)
	}
	e.rec = rec
	if rec == written {
		e.dirty = false // the write carried everything up to here
	} else {
		s.markDirty(sh, id, e)
	}
	if woke {
		e.by = byAdmin
	}
	s.rearm(id, e, next)
	e.notify()
	o := s.snapshot(id, e)
	sh.mu.Unlock()
	s.log.Info("org updated", "org", id,
		"scale_to_zero_allowed", o.ScaleToZeroAllowed, "was_scale_to_zero_allowed", before.ScaleToZero,
		"idle_window", o.IdleWindow, "idle_window_overridden", o.IdleWindowOverridden, "warm_schedule", o.WarmSchedule.String(), "pool_weight", o.PoolWeight)
	switch {
	case woke:
		s.log.Info("org woke", "org", id, "reason", WakeAdmin, "dormant_since", before.DormantSince.Time())
		s.transition(Transition{Org: id, Woke: true, Reason: WakeAdmin, LastActivity: o.LastActivity,
			DormantSince: before.DormantSince.Time(), IdleWindow: o.IdleWindow})
	case slept:
		// The new settings put the org past its window: dormant now, so
		// the answer to this very call already says so.
		s.log.Info("org went dormant", "org", id, "reason", WakeAdmin, "last_activity", o.LastActivity,
			"idle_window", o.IdleWindow, "dormant_since", o.DormantSince)
		s.transition(Transition{Org: id, LastActivity: o.LastActivity, DormantSince: o.DormantSince, IdleWindow: o.IdleWindow})
	}
	return o
}

// Delete removes org from disk, then from memory, leaving a tombstone, and
// returns it as it was, with how many watches still follow it: each open
// stream recreates it as new (active) at its next look. ok is false when
// the store does not hold it.
func (s *Store) Delete(ctx context.Context, id string) (o Org, watchers int, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return Org{}, 0, false, err
	}
	s.writeMu.Lock() // only writeMu holders remove orgs, and no flush writes it back
	defer s.writeMu.Unlock()
	sh := s.shard(id)
	sh.mu.Lock()
	e, ok := sh.orgs[id]
	var seen hlc.Stamp
	if ok {
		seen = max(hlc.Stamp(e.rec.LastActivity), e.rec.ScaleToZeroAt, e.rec.IdleWindowAt, e.rec.ScheduleAt, e.rec.PoolWeightAt)
	}
	sh.mu.Unlock()
	if !ok {
		return Org{}, 0, false, nil
	}
	// The tombstone is later than everything the delete saw, whatever the
	// clocks that stamped it (activity taken by a replica whose clock was
	// ahead): a delete that answers OK removes the org everywhere.
	s.clock.Observe(seen)
	d := max(s.clock.Now(), seen+1)
	if err := s.erase(id, d); err != nil {
		return Org{}, 0, false, err // memory unchanged: the org is still there
	}
	o, watchers = s.forget(sh, id, d)
	s.deleted(id)
	s.changed(Change{Org: id, Deleted: d})
	s.log.Info("org deleted", "org", id, "last_activity", o.LastActivity, "open_streams", watchers)
	return o, watchers, true, nil
}

// forget applies a delete at d to id in memory: the org goes unless
// something later than d keeps it (then it is rewritten). It returns the
// org as it was and how many watches followed it.
func (s *Store) forget(sh *shard, id string, d hlc.Stamp) (Org, int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.addTomb(sh, id, d)
	e, ok := sh.orgs[id]
	if !ok {
		return Org{}, 0
	}
	o := s.snapshot(id, e)
	rec := e.rec
	if mergeDelete(&rec, d) {
		// Activity or a setting later than the delete keeps the org.
		_, _, next := s.settle(&rec, s.opts.Now())
		e.rec = rec
		s.rearm(id, e, next)
		s.markUrgent(sh, id, e)
		e.notify()
		return o, 0
	}
	delete(sh.orgs, id)
	s.count.Add(-1)
	s.metrics.moved(stateOf(e.rec), "")
	watchers := 0
	if e.watchers != nil {
		watchers = len(*e.watchers)
		if sh.orphans == nil {
			sh.orphans = map[string]*watch.List{}
		}
		sh.orphans[id] = e.watchers
		e.watchers.Notify()
	}
	if sh.deleted == nil || len(sh.deleted) >= maxDeletedRemembered {
		sh.deleted = map[string]struct{}{}
	}
	sh.deleted[id] = struct{}{}
	return o, watchers
}

// maxDeletedRemembered bounds, per shard, the deleted ids remembered so
// the log can say an org came back.
const maxDeletedRemembered = 1024

// Filter selects orgs by state.
type Filter int

// Filters for List.
const (
	All Filter = iota
	Active
	Dormant
)

// List returns up to limit orgs with ids after after, in id order, and
// whether more follow. It keeps only about 2×limit candidates at a time, so
// paging through a million orgs does not sort a million each page.
func (s *Store) List(f Filter, after string, limit int) ([]Org, bool) {
	if limit < 1 {
		limit = 1
	}
	out := make([]Org, 0, 2*limit+1)
	trim := func() {
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		if len(out) > limit+1 {
			out = out[:limit+1]
		}
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, e := range sh.orgs {
			if id <= after {
				continue
			}
			dormant := !e.rec.DormantSince.IsZero()
			if (f == Active && dormant) || (f == Dormant && !dormant) {
				continue
			}
			out = append(out, s.snapshot(id, e))
			if len(out) > 2*limit {
				trim()
			}
		}
		sh.mu.Unlock()
	}
	trim()
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// Watch is a subscription to the changes of one org: C receives a value
// (coalesced) after every activity, transition or admin change.
type Watch struct {
	c     watch.Signal
	id    string
	store *Store
}

// C is signalled after each change of the org.
func (w *Watch) C() <-chan struct{} { return w.c }

// Watch subscribes to the changes of org, creating it if it is new (past
// MaxOrgs, a new org is refused with a *LimitError).
func (s *Store) Watch(id string) (*Watch, error) {
	w := &Watch{c: watch.New(), id: id, store: s}
	sh := s.shard(id)
	sh.mu.Lock()
	if err := s.refuseNew(sh, id); err != nil {
		sh.mu.Unlock()
		return nil, err
	}
	e, held := sh.orgs[id]
	var created *Change
	if !held {
		var c Change
		e, c = s.createForTrigger(sh, id)
		created = &c
	}
	if e.watchers == nil {
		e.watchers = new(watch.List)
	}
	e.watchers.Add(w.c)
	dormant := !e.rec.DormantSince.IsZero()
	sh.mu.Unlock()
	if created != nil {
		s.namedByTrigger(*created, dormant)
	}
	return w, nil
}

// Stop ends the subscription.
func (w *Watch) Stop() {
	sh := w.store.shard(w.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.orgs[w.id]; ok && e.watchers != nil {
		e.watchers.Remove(w.c)
		if len(*e.watchers) == 0 {
			e.watchers = nil
		}
	} else if l := sh.orphans[w.id]; l != nil {
		l.Remove(w.c)
		if len(*l) == 0 {
			delete(sh.orphans, w.id)
		}
	}
}

// Notify tells org's watchers that something their answers read beside
// the org (its idle times) has changed, so they look again.
func (s *Store) Notify(id string) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.orgs[id]; ok {
		e.notify()
	}
}

// Watchers returns how many watches org has: how many open streams follow it.
func (s *Store) Watchers(id string) int {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.orgs[id]; ok && e.watchers != nil {
		return len(*e.watchers)
	}
	return 0
}
