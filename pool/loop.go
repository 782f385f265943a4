package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Tick is how often the loop turns every pool. Turns fall on whole
// multiples of Tick of the wall clock, so replicas that see the same
// members turn at the same instants and grant the same shares.
const Tick = time.Second

// LoopOptions configure a Loop.
type LoopOptions struct {
	// Configs lists every defined pool; Lookup finds one by name (the
	// answers ask it on every call).
	Configs func() []Config
	Lookup  func(name string) (Config, bool)
	// Wants gathers, at a turn, every member of every pool by pool name:
	// what each asks, from what every replica sees alike.
	Wants func(now time.Time) map[string][]Want
	Now   func() time.Time
	// Observer, when set, is told after each turn of what changed.
	Observer Observer
}

// Observer is told, after a turn, of each member whose share fell below
// what it asks (capped) or came back up to it, and of each pool whose
// members' minimums alone came to exceed it or no longer do; the Events
// recorder provides it (recording only while this replica leads, so a
// fleet records each once). The loop's first turn (the scaler's start)
// tells only of pools set since the loop began: it did not see how the
// others got there.
type Observer interface {
	Seated(st State, s Seat, capped bool)
	Overcommitted(st State, over bool)
}

// Loop turns every pool each Tick, from one consistent gathering of its
// members, and keeps each pool's state for the answers, which only read
// it.
type Loop struct {
	o LoopOptions

	live  map[string]*Live // only the loop's goroutine uses them, and told
	told  bool             // a turn has been made: the next tells what changed
	began time.Time        // when the loop was made
	// states is every pool's last turn, replaced whole at each turn: the
	// answers read it without a lock.
	states atomic.Pointer[map[string]State]

	mu      sync.Mutex
	changed map[string]chan struct{} // closed when the pool's seats change
	turned  chan struct{}            // closed at every turn
}

// NewLoop returns a Loop; Run turns it.
func NewLoop(o LoopOptions) *Loop {
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Loop{o: o, live: map[string]*Live{}, changed: map[string]chan struct{}{}, turned: make(chan struct{}), began: o.Now()}
	l.states.Store(&map[string]State{})
	return l
}

// Run turns every pool on each Tick of the wall clock until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := l.o.Now()
		timer.Reset(now.Truncate(Tick).Add(Tick).Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			l.Turn(l.o.Now().Truncate(Tick))
		}
	}
}

// Turn turns every pool at now: what Run does each Tick, with now on a
// whole Tick (the members' demands are as of the clock).
func (l *Loop) Turn(now time.Time) {
	configs := l.o.Configs()
	var wants map[string][]Want
	if len(configs) > 0 { // no pool: nothing to gather
		// Asked as of the clock, not the turn's whole second: activity
		// later within the second is in force already.
		wants = l.o.Wants(l.o.Now())
	}
	states := make(map[string]State, len(configs))
	for _, cfg := range configs {
		lv := l.live[cfg.Name]
		if lv == nil {
			lv = &Live{}
			l.live[cfg.Name] = lv
		}
		states[cfg.Name] = lv.Turn(now, cfg, wants[cfg.Name])
	}
	for name := range l.live {
		if _, ok := states[name]; !ok {
			delete(l.live, name) // deleted: a pool set again starts afresh
		}
	}
	before := *l.states.Swap(&states)
	l.mu.Lock()
	for name, st := range states {
		if !sameSeats(before[name], st) {
			if ch, ok := l.changed[name]; ok {
				close(ch)
				delete(l.changed, name)
			}
		}
	}
	for name, ch := range l.changed {
		if _, ok := states[name]; !ok {
			close(ch)
			delete(l.changed, name)
		}
	}
	close(l.turned)
	l.turned = make(chan struct{})
	l.mu.Unlock()
	if l.o.Observer != nil {
		for name, st := range states {
			if l.told || st.Set.After(l.began) {
				tell(l.o.Observer, before[name], st) // a new pool: from nothing
			}
		}
	}
	l.told = true
}

// tell tells o what changed from a pool's turn prev to its next, st.
func tell(o Observer, prev, st State) {
	if prev.Overcommitted != st.Overcommitted {
		o.Overcommitted(st, st.Overcommitted)
	}
	for _, s := range st.seats {
		capped := s.Share < s.Demand
		p, ok := prev.Seat(s.ID)
		if was := ok && p.Share < p.Demand; capped != was && (ok || capped) {
			o.Seated(st, s, capped)
		}
	}
}

// sameSeats reports whether every member holds the same share and place.
func sameSeats(a, b State) bool {
	if len(a.seats) != len(b.seats) {
		return false
	}
	for _, s := range a.seats {
		t, ok := b.Seat(s.ID)
		if !ok || s.Share != t.Share || s.Queued != t.Queued {
			return false
		}
	}
	return true
}

// Lookup returns the pool called name, if it is defined.
func (l *Loop) Lookup(name string) (Config, bool) { return l.o.Lookup(name) }

// State returns the pool's state at its last turn; false before its
// first.
func (l *Loop) State(name string) (State, bool) {
	st, ok := (*l.states.Load())[name]
	return st, ok
}

// Seat returns member id's seat in the pool at its last turn, with the
// pool's queue length; false when the last turn did not have it.
func (l *Loop) Seat(name, id string) (Seat, int, bool) {
	st, ok := (*l.states.Load())[name]
	if !ok {
		return Seat{}, 0, false
	}
	s, ok := st.Seat(id)
	return s, len(st.Queue), ok
}

// Changed is closed when the pool's seats next change (or it goes).
func (l *Loop) Changed(name string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.changed[name]
	if !ok {
		ch = make(chan struct{})
		l.changed[name] = ch
	}
	return ch
}

// Turned is closed at the next turn.
func (l *Loop) Turned() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.turned
}
