package pool

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// A pool of 8 GPUs: three orgs share it 3/3/2; when the first wants only
// one, the others get its two GPUs only once it has given them up, after
// the window, and never is more than the pool granted in between.
func TestStableGivesUpBeforeGiving(t *testing.T) {
	const window = time.Minute
	t0 := time.Unix(1_800_000_000, 0)
	members := func(a int64) []Member {
		return []Member{{ID: "a", Org: "a", GPUs: 1, Demand: a}, {ID: "b", Org: "b", GPUs: 1, Demand: 8}, {ID: "c", Org: "c", GPUs: 1, Demand: 8}}
	}
	s := Stable{Window: window}
	step := func(at time.Duration, a int64) string {
		ms := members(a)
		g := s.Step(t0.Add(at), 8, ms, Share(8, ms).Shares)
		if sum := g["a"] + g["b"] + g["c"]; sum > 8 {
			t.Fatalf("at %s: %d GPUs granted of 8", at, sum)
		}
		return fmt.Sprintf("%d/%d/%d", g["a"], g["b"], g["c"])
	}
	for _, c := range []struct {
		at   time.Duration
		a    int64
		want string
	}{
		{0, 8, "3/3/2"},
		{10 * time.Second, 1, "3/3/2"}, // a's target is 1: it keeps 3 for the window
		{69 * time.Second, 1, "3/3/2"},
		{70 * time.Second, 1, "1/4/3"}, // given up, then given
		{80 * time.Second, 8, "1/4/3"}, // a wants 8 again: no GPU is free
	} {
		if got := step(c.at, c.a); got != c.want {
			t.Fatalf("at %s (a wants %d): %s; want %s", c.at, c.a, got, c.want)
		}
	}
	// b leaves: its 4 are free at once, and a gets them up to its target.
	ms := members(8)[:1]
	ms = append(ms, members(8)[2])
	g := s.Step(t0.Add(90*time.Second), 8, ms, Share(8, ms).Shares)
	if g["a"] != 4 || g["c"] != 4 || len(g) != 2 {
		t.Fatalf("after b left: %v; want a and c at their targets, 4 each", g)
	}
}

// A member whose demand flaps moves the others at most once a window.
func TestStableFlapping(t *testing.T) {
	const window = time.Minute
	t0 := time.Unix(1_800_000_000, 0)
	s := Stable{Window: window}
	changes, last := 0, int64(-1)
	for i := range 600 { // 10 minutes, a step a second
		demand := int64(1)
		if i%20 < 10 {
			demand = 8
		}
		ms := []Member{{ID: "flappy", Org: "f", GPUs: 1, Demand: demand}, {ID: "steady", Org: "s", GPUs: 1, Demand: 8}}
		g := s.Step(t0.Add(time.Duration(i)*time.Second), 8, ms, Share(8, ms).Shares)
		if g["steady"] != last {
			changes, last = changes+1, g["steady"]
		}
	}
	if changes > 1+10 {
		t.Fatalf("steady's share changed %d times in 10 minutes of a flapping neighbour; want at most once a minute", changes)
	}
}

// Over random pools and steps: the members' order changes nothing, the
// pool is never exceeded (unless the
// minimums alone do), no share is below its minimum, a share goes up only
// to its target, and comes down only after its target stayed below it
// for the whole window, unless a member just joined (its minimum, which
// KEDA keeps, needs the room at once).
func TestStableProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	const window = 30 * time.Second
	for n := range 200 {
		t0 := time.Unix(1_800_000_000, 0)
		s, s2 := Stable{Window: window}, Stable{Window: window}
		capacity := 4 + r.Int64N(20)
		prev := map[string]int64{}
		below := map[string]time.Time{} // since when the target has been below the grant
		ms := make([]Member, 1+r.IntN(6))
		for i := range ms {
			ms[i] = Member{ID: fmt.Sprintf("m%d", i), Org: fmt.Sprintf("o%d", r.IntN(3)), Weight: 1, GPUs: 1 + r.Int64N(3), Min: r.Int64N(2)}
		}
		for step := range 120 {
			now := t0.Add(time.Duration(step) * 5 * time.Second)
			var in []Member
			for _, m := range ms {
				if r.IntN(10) > 0 { // now and then a member leaves, and comes back
					m.Demand = r.Int64N(8)
					in = append(in, m)
				}
			}
			target := Share(capacity, in).Shares
			joined := false
			for _, m := range in {
				if _, was := prev[m.ID]; !was && m.Min > 0 {
					joined = true
				}
			}
			g := s.Step(now, capacity, in, target)
			rev := make([]Member, len(in))
			for i, m := range in {
				rev[len(in)-1-i] = m
			}
			if g2 := s2.Step(now, capacity, rev, target); fmt.Sprint(g2) != fmt.Sprint(g) {
				t.Fatalf("case %d step %d: the members' order changed the grants: %v, %v", n, step, g, g2)
			}
			used, mins := int64(0), int64(0)
			for _, m := range in {
				used += g[m.ID] * m.GPUs
				mins += m.Min * m.GPUs
				p, was := prev[m.ID]
				switch {
				case g[m.ID] < m.Min:
					t.Fatalf("case %d step %d: %s granted %d, below its minimum %d", n, step, m.ID, g[m.ID], m.Min)
				case was && g[m.ID] > p && g[m.ID] > target[m.ID]:
					t.Fatalf("case %d step %d: %s raised to %d, past its target %d", n, step, m.ID, g[m.ID], target[m.ID])
				case was && g[m.ID] < p && now.Sub(below[m.ID]) < window && !joined:
					t.Fatalf("case %d step %d: %s lowered from %d to %d after %s below; want the whole %s", n, step, m.ID, p, g[m.ID], now.Sub(below[m.ID]), window)
				}
			}
			if mins <= capacity && used > capacity {
				t.Fatalf("case %d step %d: %d GPUs granted of %d", n, step, used, capacity)
			}
			prev = map[string]int64{}
			for _, m := range in {
				prev[m.ID] = g[m.ID]
				switch _, already := below[m.ID]; {
				case target[m.ID] >= g[m.ID]:
					delete(below, m.ID)
				case !already || g[m.ID] != s.granted[m.ID]:
					below[m.ID] = now
				}
			}
			for id := range below {
				if _, ok := prev[id]; !ok {
					delete(below, id)
				}
			}
		}
	}
}
