package activity

import (
	"time"

	"github.com/orgscaler/orgscaler/warm"
)

// window is the idle window in force for r: its own, else the default.
func (s *Store) window(r record) time.Duration {
	if r.IdleWindow > 0 {
		return r.IdleWindow
	}
	return s.opts.IdleWindow
}

// settle applies the warm rule (package warm) to rec at now: a dormant
// org the rule finds warm wakes, an active one it finds cold is dormant
// from the instant it turned cold. It reports what changed, and when the
// rule must be applied again (zero: only an event can change it).
func (s *Store) settle(rec *record, now time.Time) (woke, slept bool, next time.Time) {
	st := warm.At(s.warmOrg(*rec), now)
	switch {
	case !rec.DormantSince.IsZero() && st.Warm:
		rec.DormantSince = 0
		woke = true
	case rec.DormantSince.IsZero() && !st.Warm:
		rec.DormantSince = stampOf(st.Since)
		slept = true
	}
	return woke, slept, st.Next
}

// warmOrg is what the warm rule reads of a record.
func (s *Store) warmOrg(r record) warm.Org {
	return warm.Org{LastActivity: r.LastActivity.Time(), ScaleToZeroAllowed: r.ScaleToZero, Window: s.window(r), Schedule: r.Schedule}
}

// rearm makes sure the scheduler applies the rule to id again at next,
// if ever. Caller holds the shard lock.
func (s *Store) rearm(id string, e *entry, next time.Time) {
	if !next.IsZero() {
		s.schedule(id, e, next)
	}
}

// expire is the scheduler's callback at an org's deadline: the end of its
// window, or an edge of its warm schedule.
func (s *Store) expire(id string, at time.Time) {
	sh := s.shard(id)
	sh.mu.Lock()
	e, ok := sh.orgs[id]
	if !ok || e.scheduled != stampOf(at) {
		sh.mu.Unlock()
		return
	}
	e.scheduled = 0
	before := e.rec.DormantSince.Time()
	woke, slept, next := s.settle(&e.rec, s.opts.Now())
	s.rearm(id, e, next)
	if !woke && !slept {
		sh.mu.Unlock()
		return
	}
	if woke {
		s.metrics.moved("dormant", "active")
		e.by = bySchedule
	} else {
		s.metrics.moved("active", "dormant")
	}
	s.markUrgent(sh, id, e)
	e.notify()
	last, window, since := e.rec.LastActivity.Time(), s.window(e.rec), e.rec.DormantSince.Time()
	sh.mu.Unlock()
	if woke {
		s.log.Info("org woke", "org", id, "reason", WakeSchedule, "dormant_since", before)
		s.transition(Transition{Org: id, Woke: true, Reason: WakeSchedule, LastActivity: last, DormantSince: before, IdleWindow: window})
		return
	}
	s.log.Info("org went dormant", "org", id, "last_activity", last, "idle_window", window, "dormant_since", since)
	s.transition(Transition{Org: id, LastActivity: last, DormantSince: since, IdleWindow: window})
}
