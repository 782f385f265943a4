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
	// Set is when the definition was last written.
	Set time.Time
}

// Want is a member at one turn: what it asks, and whether work waits in
// its queue (it wakes first).
type Want struct {
	Member
	Backlog bool
}

// waiter is w as the wake queue orders it.
func (w Want) waiter() Waiter { return Waiter{ID: w.ID, Backlog: w.Backlog, Weight: w.Weight} }

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
	At time.Time
	// seats are every member's, in the order of index (by org, then ID);
	// index is shared by turns with the same members, and never changed.
	seats         []Seat
	index         map[string]int
	Queue         []string // member IDs in wake order
	Demanded      int64    // GPUs the members ask
	Granted       int64    // GPUs they hold
	Overcommitted bool     // the minimums alone exceed the pool
	// Next is when the wake rate next lets a member wake (zero: nobody
	// waits on it).
	Next time.Time
}

// Seat returns member id's seat, if the turn had it.
func (st State) Seat(id string) (Seat, bool) {
	i, ok := st.index[id]
	if !ok {
		return Seat{}, false
	}
	return st.seats[i], true
}

// Seats returns every member's seat, by org and then member ID.
func (st State) Seats() []Seat { return st.seats }

// Live is one pool's shares over time: Stable's shares, with wakes paced
// by Wakes. Not safe for concurrent use: one loop turns it.
type Live struct {
	stable Stable
	wakes  Wakes
	last   State
	// heldBack is scratch: the members the wake rate holds back this turn.
	heldBack map[string]bool
	rank     map[string]int // each member's place in the last turn's order
}

// sorted is wants in the order Share groups members (by org, then ID),
// so none of its calls sorts again. Members seldom change from one turn
// to the next: last turn's order places them without a sort.
func (l *Live) sorted(wants []Want) []Want {
	out := make([]Want, len(wants))
	placed := len(wants) == len(l.rank)
	for _, w := range wants {
		if !placed {
			break
		}
		r, ok := l.rank[w.ID]
		placed = ok && out[r].ID == ""
		if placed {
			out[r] = w
		}
	}
	less := func(a, b Want) int { return byOrg(a.Member, b.Member) }
	if placed && slices.IsSortedFunc(out, less) {
		return out
	}
	// A new map, never one a published State holds.
	copy(out, wants)
	slices.SortFunc(out, less)
	l.rank = make(map[string]int, len(out))
	for i, w := range out {
		l.rank[w.ID] = i
	}
	return out
}

// Turn computes the pool's state at now for the members that want it.
//
// Stable moves every share toward Share's target over every member's
// demand. Then the wake rate paces the members that this moves from zero
// to a share: those it holds back are given none this turn (their GPUs
// stay free, as the others' targets leave them out), and wait in its
// queue. A Live's first turn (the scaler's start) paces nobody: it did
// not see its members at zero.
func (l *Live) Turn(now time.Time, cfg Config, wants []Want) State {
	first := l.heldBack == nil
	if first {
		l.heldBack = map[string]bool{}
	}
	l.stable.Window, l.wakes.N, l.wakes.Per = cfg.Stabilization, cfg.WakeCount, cfg.WakePer
	wants = l.sorted(wants)
	all := make([]Member, len(wants))
	for i, w := range wants {
		all[i] = w.Member
	}
	target, targets := shareSorted(cfg.GPUs, all)
	shares := l.stable.step(now, cfg.GPUs, all, targets)
	var activating []Waiter
	if !first {
		activating = l.activating(wants, shares)
	}
	_, held, next := l.wakes.Step(now, activating)
	clear(l.heldBack)
	for _, id := range held {
		l.stable.revoke(id)
		l.heldBack[id] = true
	}
	st := State{Config: cfg, At: now, Next: next, Overcommitted: target.Overcommitted}
	l.seat(&st, wants, shares, held)
	l.last = st
	return st
}

// activating are the members that go from zero to a share this turn: the
// wake rate's to pace. A member kept at its minimum whatever it is told,
// or whose replicas cost no GPU, is not paced.
func (l *Live) activating(wants []Want, shares map[string]int64) []Waiter {
	var out []Waiter
	for _, w := range wants {
		last, _ := l.last.Seat(w.ID)
		if shares[w.ID] > 0 && last.Share == 0 && w.Min <= 0 && w.GPUs > 0 {
			out = append(out, w.waiter())
		}
	}
	return out
}

// seat fills st with every member's seat and the queue: after the
// held-back ones, every other member that wants replicas and has none
// (no share was fair for it, or it is still someone else's, within its
// window).
func (l *Live) seat(st *State, wants []Want, shares map[string]int64, held []string) {
	var waiting []Want
	for _, w := range wants {
		if w.Demand > 0 && shares[w.ID] == 0 && !l.heldBack[w.ID] {
			waiting = append(waiting, w)
		}
	}
	st.Queue = append(held, waitingOrder(waiting)...)
	place := make(map[string]int, len(st.Queue))
	for i, id := range st.Queue {
		place[id] = i + 1
	}
	st.seats, st.index = make([]Seat, len(wants)), l.rank
	for i, w := range wants {
		s := Seat{Want: w, Share: shares[w.ID], Queued: place[w.ID]}
		st.seats[i] = s
		st.Demanded += max(w.Demand, w.Min, 0) * max(w.GPUs, 0)
		st.Granted += s.Share * max(w.GPUs, 0)
	}
}

// waitingOrder is the members waiting for capacity in the wake queue's
// order (backlog, then org weight, then ID).
func waitingOrder(ws []Want) []string {
	slices.SortFunc(ws, func(a, b Want) int {
		if c := byUrgency(a.waiter(), b.waiter()); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	return ids
}
