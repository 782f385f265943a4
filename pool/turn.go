package pool

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"time"
)

// NameExpected says what a pool's name must be, for error messages.
const NameExpected = "a DNS label: 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName reports whether name can name a pool: it becomes a metric
// label and part of an Event's message.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// ID names a member: its ScaledObject and its trigger's metric (a
// ScaledObject may have several triggers).
func ID(namespace, name, metric string) string { return namespace + "/" + name + "/" + metric }

// SplitID is a member ID's ScaledObject (namespace/name) and metric.
func SplitID(id string) (object, metric string) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return "", id
	}
	return id[:i], id[i+1:]
}

// Config is a pool's definition, as its turns read it.
type Config struct {
	Name          string
	GPUs          int64
	WakeCount     int           // 0: wakes are not paced
	WakePer       time.Duration // with WakeCount
	Stabilization time.Duration
}

// Want is a member at one turn: what it asks, and whether work waits in
// its queue (it wakes first).
type Want struct {
	Member
	Backlog bool
}

// Seat is one member's place in the pool after a turn.
type Seat struct {
	Want
	Share int64 // replicas granted
	// Queued is its 1-based place among the members waiting to wake (for
	// free capacity or for their turn under the wake rate); 0: not waiting.
	Queued int
}

// State is a pool after a turn: what every member is granted, and who
// waits. The answers read it; nothing else changes it.
type State struct {
	Config
	At            time.Time
	Seats         map[string]Seat // by member ID
	Queue         []string        // member IDs in wake order
	Demanded      int64           // GPUs the members ask
	Granted       int64           // GPUs they hold
	Overcommitted bool            // the minimums alone exceed the pool
	// Next is when the wake rate next lets a member wake (zero: nobody
	// waits on it).
	Next time.Time
}

// Live is one pool's shares over time: Stable's shares, with wakes paced
// by Wakes. Not safe for concurrent use: one loop turns it.
type Live struct {
	stable Stable
	wakes  Wakes
	woken  map[string]bool // woken, not yet granted: out of the wake queue
	last   State
}

// Turn computes the pool's state at now for the members that want it.
//
// A member at zero that wants replicas is a waker. Wakers whose fair
// share (Share over every member's demand) is zero wait for capacity;
// the rest wake as the wake rate allows, and those it holds back keep
// their fair share reserved, so nobody else takes it meanwhile. Then
// Stable moves every share toward Share's target over the members that
// are not waiting.
func (l *Live) Turn(now time.Time, cfg Config, wants []Want) State {
	if l.woken == nil {
		l.woken = map[string]bool{}
	}
	l.stable.Window, l.wakes.N, l.wakes.Per = cfg.Stabilization, cfg.WakeCount, cfg.WakePer
	all := make([]Member, len(wants))
	for i, w := range wants {
		all[i] = w.Member
	}
	fair := Share(cfg.GPUs, all).Shares
	var candidates []Waiter
	full := map[string]bool{}
	for _, w := range wants {
		if !l.waking(w) {
			continue
		}
		if fair[w.ID] == 0 {
			full[w.ID] = true
			continue
		}
		candidates = append(candidates, Waiter{ID: w.ID, Backlog: w.Backlog, Weight: w.Weight})
	}
	wake, held, next := l.wakes.Step(now, candidates)
	for _, id := range wake {
		l.woken[id] = true
	}
	capacity := cfg.GPUs
	heldBack := map[string]bool{}
	for _, id := range held {
		heldBack[id] = true
	}
	members := make([]Member, 0, len(wants))
	for _, w := range wants {
		m := w.Member
		if heldBack[m.ID] || full[m.ID] {
			capacity -= fair[m.ID] * max(m.GPUs, 0)
			m.Demand = max(m.Min, 0)
		}
		members = append(members, m)
	}
	capacity = max(capacity, 0)
	target := Share(capacity, members)
	shares := l.stable.Step(now, capacity, members, target.Shares)
	st := State{Config: cfg, At: now, Seats: make(map[string]Seat, len(wants)), Next: next, Overcommitted: target.Overcommitted}
	// After the held-back ones, those waiting for capacity: none was fair
	// for them, or it is still someone else's, within its window.
	waiting := map[string]bool{}
	for _, w := range wants {
		if full[w.ID] || l.woken[w.ID] && shares[w.ID] == 0 {
			waiting[w.ID] = true
		}
	}
	st.Queue = append(held, waitingOrder(wants, waiting)...)
	place := map[string]int{}
	for i, id := range st.Queue {
		place[id] = i + 1
	}
	for _, w := range wants {
		s := Seat{Want: w, Share: shares[w.ID], Queued: place[w.ID]}
		if s.Share > 0 {
			delete(l.woken, w.ID)
		}
		st.Seats[w.ID] = s
		st.Demanded += max(w.Demand, w.Min, 0) * max(w.GPUs, 0)
		st.Granted += s.Share * max(w.GPUs, 0)
	}
	for id := range l.woken {
		if s, ok := st.Seats[id]; !ok || s.Demand <= 0 {
			delete(l.woken, id)
		}
	}
	l.last = st
	return st
}

// waking reports whether w is at zero and wants to wake, and was not
// woken already (it is then waiting for Stable to free its share).
func (l *Live) waking(w Want) bool {
	return w.Demand > 0 && w.Min <= 0 && l.last.Seats[w.ID].Share == 0 && !l.woken[w.ID]
}

// waitingOrder is the members waiting for capacity, in the wake queue's
// order (backlog, then org weight, then ID).
func waitingOrder(wants []Want, waiting map[string]bool) []string {
	var ws []Want
	for _, w := range wants {
		if waiting[w.ID] {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b Want) int {
		switch {
		case a.Backlog != b.Backlog:
			if a.Backlog {
				return -1
			}
			return 1
		case a.Weight != b.Weight:
			return cmp.Compare(b.Weight, a.Weight)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	return ids
}
