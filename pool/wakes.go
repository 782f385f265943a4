package pool

import (
	"cmp"
	"slices"
	"time"
)

// Wakes paces a pool's wakes (--wake-rate N/D): at most N members go from
// zero to active in any D, so node pools and image registries never see
// every org's models start at once; the others wait their turn. Not safe
// for concurrent use: the pool's loop steps it.
type Wakes struct {
	N   int           // wakes per Per; 0: no pacing
	Per time.Duration // the window
	// woken holds the instants of the wakes within the last Per.
	woken []time.Time
	since map[string]time.Time // when each waiting member began to wait
}

// Waiter is a member that wants to go from zero to active.
type Waiter struct {
	ID      string
	Backlog bool  // work waits in its queue: it goes first
	Weight  int64 // its org's pool weight: heavier goes before lighter
}

// byUrgency orders waiters as the queue does first: those with backlog,
// then by org weight, heavier first; 0 when alike.
func byUrgency(a, b Waiter) int {
	if a.Backlog != b.Backlog {
		if a.Backlog {
			return -1
		}
		return 1
	}
	return cmp.Compare(b.Weight, a.Weight)
}

// Step says which of want may wake at now, and the order the rest wait
// in (backlog first, then by org weight, then by how long they have
// waited, then by ID), and when the next turn comes (zero: nobody waits).
// A member not in want stops waiting.
func (w *Wakes) Step(now time.Time, want []Waiter) (wake, queue []string, next time.Time) {
	type waiting struct {
		Waiter
		since time.Time
	}
	order := make([]waiting, len(want))
	since := make(map[string]time.Time, len(want)) // only those in want still wait
	for i, x := range want {
		t, ok := w.since[x.ID]
		if !ok {
			t = now
		}
		order[i], since[x.ID] = waiting{x, t}, t
	}
	w.since = since
	slices.SortFunc(order, func(a, b waiting) int {
		if c := byUrgency(a.Waiter, b.Waiter); c != 0 {
			return c
		}
		if !a.since.Equal(b.since) {
			return a.since.Compare(b.since)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	// Wakes older than the window no longer count.
	w.woken = slices.DeleteFunc(w.woken, func(t time.Time) bool { return !t.After(now.Add(-w.Per)) })
	slots := len(order)
	if w.N > 0 && w.Per > 0 {
		slots = max(0, w.N-len(w.woken))
	}
	for i, x := range order {
		if i < slots {
			wake = append(wake, x.ID)
			w.woken = append(w.woken, now)
			delete(w.since, x.ID)
			continue
		}
		queue = append(queue, x.ID)
	}
	if len(queue) > 0 && len(w.woken) > 0 {
		next = w.woken[0].Add(w.Per)
	}
	return wake, queue, next
}
