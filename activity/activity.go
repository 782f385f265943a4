package activity

import (
	"time"
)

// Record records one activity of org, whatever MaxOrgs says: for callers
// that create orgs on purpose. woke is true when the org was dormant (or
// new) and is now active.
func (s *Store) Record(id string) (o Org, woke bool) {
	o, woke, _ = s.record(id, WakeActivity, time.Time{}, false)
	return o, woke
}

// RecordFor records one activity of org, saying what it was (activity, or
// an enqueue hint naming the org). Past MaxOrgs, activity for a new org is
// refused with a *LimitError.
func (s *Store) RecordFor(id string, why WakeReason) (o Org, woke bool, err error) {
	return s.record(id, why, time.Time{}, true)
}

// RecordAt is RecordFor for activity that happened at at (a producer's
// queued activity); an at later than now is taken as now. Activity older
// than the org's latest moves nothing but is counted.
func (s *Store) RecordAt(id string, why WakeReason, at time.Time) (o Org, woke bool, err error) {
	return s.record(id, why, at, true)
}

func (s *Store) record(id string, why WakeReason, at time.Time, limited bool) (o Org, woke bool, err error) {
	s.metrics.events.Inc()
	now := s.opts.Now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	sh := s.shard(id)
	sh.mu.Lock()
	if limited {
		if err := s.refuseNew(sh, id); err != nil {
			sh.mu.Unlock()
			return Org{}, false, err
		}
	}
	e, created := s.getOrCreateAt(sh, id, at, now)
	e.by = byOf(why)
	var wasDormant, prev time.Time
	advanced := created
	if !created {
		prev = e.rec.LastActivity.Time()
		advanced = mergeActivity(&e.rec, stampOf(at), sh.tombs[id])
		before := e.rec.DormantSince.Time()
		if woke, _, next := s.settle(&e.rec, now); woke {
			wasDormant = before
			s.metrics.moved("dormant", "active")
			s.markUrgent(sh, id, e)
			s.rearm(id, e, next)
		} else {
			s.markDirty(sh, id, e)
		}
	}
	e.notify()
	o = s.snapshot(id, e)
	sh.mu.Unlock()
	s.changed(Change{Org: id, Activity: o.LastActivity})
	if advanced {
		s.activity(id, prev, o.LastActivity)
	}
	switch {
	case created:
		s.log.Info("new org", "org", id, "reason", why)
	case !wasDormant.IsZero():
		s.log.Info("org woke", "org", id, "reason", why, "dormant_since", wasDormant,
			"dormant_for", now.Sub(wasDormant).Round(time.Second))
		s.transition(Transition{Org: id, Woke: true, Reason: why, LastActivity: o.LastActivity,
			DormantSince: wasDormant, IdleWindow: o.IdleWindow})
	}
	return o, created || !wasDormant.IsZero(), nil
}

// refuseNew returns a *LimitError when id is new and the store holds
// MaxOrgs orgs. The cap is checked without a global lock, so concurrent
// first sightings may pass it by their number. Caller holds sh.mu.
func (s *Store) refuseNew(sh *shard, id string) error {
	if _, ok := sh.orgs[id]; ok || s.opts.MaxOrgs <= 0 || s.count.Load() < int64(s.opts.MaxOrgs) {
		return nil
	}
	s.metrics.refused.Inc()
	return &LimitError{Org: id, Max: s.opts.MaxOrgs}
}

// Sight returns org, creating it as active from now if it was never seen:
// a fresh deployment must not drop to zero before anyone used it. Past
// MaxOrgs a new org is refused with a *LimitError.
func (s *Store) Sight(id string) (Org, error) {
	sh := s.shard(id)
	sh.mu.Lock()
	if e, ok := sh.orgs[id]; ok { // KEDA's every call: keep the lock short
		rec, by := e.rec, e.by
		sh.mu.Unlock()
		return s.orgOf(id, rec, by), nil
	}
	if err := s.refuseNew(sh, id); err != nil {
		sh.mu.Unlock()
		return Org{}, err
	}
	e, c := s.createForTrigger(sh, id)
	o := s.snapshot(id, e)
	sh.mu.Unlock()
	s.namedByTrigger(c, o.Dormant())
	return o, nil
}

// createForTrigger creates id, which a trigger names first: active from
// now, or, with UnseenDormant, known but never active (createIdle). It
// returns the change that creates it alike elsewhere. Caller holds sh.mu,
// and sh does not hold id.
func (s *Store) createForTrigger(sh *shard, id string) (*entry, Change) {
	if s.opts.UnseenDormant {
		return s.createIdle(sh, id, s.opts.Now())
	}
	e, _ := s.getOrCreate(sh, id, s.opts.Now())
	return e, Change{Org: id, Activity: e.rec.LastActivity.Time()}
}

// namedByTrigger reports an org a trigger created: to the other replicas,
// and in the log. Caller holds no lock.
func (s *Store) namedByTrigger(c Change, dormant bool) {
	s.changed(c)
	s.log.Info("new org", "org", c.Org, "reason", "first seen in a trigger", "dormant", dormant)
}

// createIdle creates id as known but never active: dormant (unless its
// default settings keep it warm), marked by its default scale-to-zero
// setting at the earliest stamp after any delete, so that every replica
// creates it alike and any admin change wins over the mark. It returns
// the change that creates it elsewhere. Caller holds sh.mu.
func (s *Store) createIdle(sh *shard, id string, now time.Time) (*entry, Change) {
	on, mark := true, sh.tombs[id]+1
	rec := record{FirstSeen: stampOf(now), ScaleToZero: true, ScaleToZeroAt: mark}
	_, _, next := s.settle(&rec, now)
	e := s.insert(sh, id, rec)
	s.metrics.moved("", stateOf(rec))
	s.markUrgent(sh, id, e)
	s.rearm(id, e, next)
	return e, Change{Org: id, ScaleToZero: &on, ScaleToZeroAt: mark}
}

// changed tells OnChange of a change made here.
func (s *Store) changed(c Change) {
	if s.opts.OnChange != nil {
		s.opts.OnChange(c)
	}
}

// Get returns org, or false if it was never seen.
func (s *Store) Get(id string) (Org, bool) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.orgs[id]
	if !ok {
		return Org{}, false
	}
	return s.snapshot(id, e), true
}

// Known says whether this store has heard of id: it holds it, or holds its
// tombstone. Another replica's idle counts or history of an org not known
// here came before the org's creation did (messages are not ordered).
func (s *Store) Known(id string) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, held := sh.orgs[id]
	_, deleted := sh.tombs[id]
	return held || deleted
}
