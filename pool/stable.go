package pool

import (
	"cmp"
	"slices"
	"time"
)

// Stable holds a pool's granted shares over time, so that KEDA is never
// told to run more than the pool holds while shares move: a share goes up
// as soon as capacity is free, comes down only once its target has stayed
// below it for the stabilization window (to the highest target of that
// window), and what one member gives up is another's only once it is
// given up. A member that leaves frees its share at once. Not safe for
// concurrent use: one loop per pool steps it.
type Stable struct {
	// Window is how long a share's target must stay below it before it
	// comes down (--stabilization, 60 s by default).
	Window  time.Duration
	granted map[string]int64
	down    map[string]downward
}

// downward is a share whose target is below it: since when, and the
// highest target since.
type downward struct {
	since time.Time
	floor int64
}

// Step moves the granted shares toward target (Share's, at capacity) at
// now, and returns them: the Stable's own map, to read before the next
// Step and not to change. target names every member still in the pool.
func (s *Stable) Step(now time.Time, capacity int64, members []Member, target map[string]int64) map[string]int64 {
	t := make([]int64, len(members))
	for i, m := range members {
		t[i] = target[m.ID]
	}
	return s.step(now, capacity, members, t)
}

// step is Step with the targets by index of members.
func (s *Stable) step(now time.Time, capacity int64, members []Member, target []int64) map[string]int64 {
	if s.granted == nil {
		s.granted, s.down = map[string]int64{}, map[string]downward{}
	}
	in := make(map[string]bool, len(members))
	for _, m := range members {
		in[m.ID] = true
	}
	for id := range s.granted {
		if !in[id] { // left the pool: its share is free now
			delete(s.granted, id)
			delete(s.down, id)
		}
	}
	for i, m := range members {
		s.lower(now, m, target[i])
	}
	s.raise(capacity, members, target)
	return s.granted
}

// revoke takes back what id was given this step: the wake rate holds it
// back (Live.Turn).
func (s *Stable) revoke(id string) {
	s.granted[id] = 0
	delete(s.down, id)
}

// lower brings m's share down to its target once the target has stayed
// below it for the window (to the highest target of the window), and
// never below m's minimum.
func (s *Stable) lower(now time.Time, m Member, target int64) {
	g, ok := s.granted[m.ID]
	if !ok || target >= g {
		delete(s.down, m.ID)
		return
	}
	d, ok := s.down[m.ID]
	if !ok {
		s.down[m.ID] = downward{since: now, floor: target}
		return
	}
	d.floor = max(d.floor, target)
	if now.Sub(d.since) < s.Window {
		s.down[m.ID] = d
		return
	}
	s.granted[m.ID] = max(d.floor, m.Min)
	if target < s.granted[m.ID] {
		s.down[m.ID] = downward{since: now, floor: target} // still above its target: a new window
	} else {
		delete(s.down, m.ID)
	}
}

// raise gives the members below their target what the free capacity
// holds, shared as Share shares (their shortfalls as demands). A new
// member starts at its minimum, which KEDA keeps whatever it is told: if
// that leaves the pool short, the shares still above their targets come
// down at once, without waiting out their windows.
func (s *Stable) raise(capacity int64, members []Member, target []int64) {
	free := capacity
	for _, m := range members {
		s.granted[m.ID] = max(s.granted[m.ID], m.Min, 0)
		free -= s.granted[m.ID] * max(m.GPUs, 0)
	}
	if free < 0 {
		free = s.makeRoom(free, members, target)
	}
	var short []Member
	for i, m := range members {
		if want := target[i] - s.granted[m.ID]; want > 0 {
			short = append(short, Member{ID: m.ID, Org: m.Org, Weight: m.Weight, GPUs: m.GPUs, Demand: want})
		}
	}
	if len(short) == 0 {
		return
	}
	_, more := shareIndexed(max(free, 0), short)
	for i, m := range short {
		s.granted[m.ID] += more[i]
	}
}

// makeRoom lowers the shares still above their targets, in ID order so
// every replica cuts the same, until free (below zero: new members'
// minimums past the pool) is made up or no share is above its target,
// and returns what is free then.
func (s *Stable) makeRoom(free int64, members []Member, target []int64) int64 {
	order := make([]int, len(members))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return cmp.Compare(members[i].ID, members[j].ID) })
	for _, i := range order {
		if free >= 0 {
			break
		}
		m := members[i]
		over := s.granted[m.ID] - max(target[i], m.Min, 0)
		if over <= 0 || m.GPUs <= 0 {
			continue
		}
		cut := min(over, (-free+m.GPUs-1)/m.GPUs)
		s.granted[m.ID] -= cut
		free += cut * m.GPUs
		if s.granted[m.ID] <= target[i] {
			delete(s.down, m.ID)
		}
	}
	return free
}
