package activity

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler fires expire(org, at) at each org's dormancy deadline, with one
// timer for all orgs. Entries are lazy: activity does not move an org's entry
// (that would cost a heap operation per event); when an entry comes due,
// expire looks at the org's real deadline and schedules again if it moved.
type scheduler struct {
	mu     sync.Mutex
	h      dueHeap
	kick   chan struct{}
	now    func() time.Time
	expire func(org string, at time.Time)
}

type due struct {
	at  stamp
	org string
}

type dueHeap []due

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newScheduler(now func() time.Time, expire func(string, time.Time)) *scheduler {
	return &scheduler{kick: make(chan struct{}, 1), now: now, expire: expire}
}

// add schedules org at at. Callers keep at most one live entry per org.
func (s *scheduler) add(org string, at time.Time) {
	st := stampOf(at)
	s.mu.Lock()
	heap.Push(&s.h, due{at: st, org: org})
	first := s.h[0].org == org && s.h[0].at == st
	s.mu.Unlock()
	if first {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// addAll schedules many orgs at once, in O(n) rather than a push each: a
// start loads a million.
func (s *scheduler) addAll(entries []due) {
	s.mu.Lock()
	s.h = append(s.h, entries...)
	heap.Init(&s.h)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// fireDue expires every entry that is due and returns how long until the
// next one (-1 if none).
func (s *scheduler) fireDue() time.Duration {
	for {
		var ready []due
		wait := time.Duration(-1)
		s.mu.Lock()
		now := s.now()
		for len(s.h) > 0 && s.h[0].at <= stampOf(now) {
			ready = append(ready, heap.Pop(&s.h).(due))
		}
		if len(s.h) > 0 {
			wait = s.h[0].at.Time().Sub(now)
		}
		s.mu.Unlock()
		if len(ready) == 0 {
			return wait
		}
		for _, d := range ready {
			s.expire(d.org, d.at.Time()) // may schedule entries that are due now: look again
		}
	}
}

// run fires due entries until done is closed.
func (s *scheduler) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var tc <-chan time.Time
		if wait := s.fireDue(); wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-done:
			return
		case <-s.kick:
		case <-tc:
		}
	}
}
