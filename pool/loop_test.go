package pool

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// told records what a Loop tells its Observer.
type told []string

func (t *told) Seated(st State, s Seat, capped bool) {
	*t = append(*t, fmt.Sprintf("%s %s capped=%v share=%d", st.Name, s.ID, capped, s.Share))
}

func (t *told) Overcommitted(st State, over bool) {
	*t = append(*t, fmt.Sprintf("%s overcommitted=%v", st.Name, over))
}

// The loop tells of a member capped and recovered once each, not at every
// turn, nothing at its own first turn (a start) but of pools set since it
// began, of a capped member of a pool set later, and of a pool whose
// minimums come to exceed it.
func TestLoopTellsChanges(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	cfg := Config{Name: "p", GPUs: 4}
	later := Config{Name: "later", GPUs: 0}
	early := Config{Name: "early", GPUs: 0, Set: t0.Add(time.Second)} // set after the loop began
	configs := []Config{cfg, early}
	want := map[string]int64{"a": 4, "b": 0}
	minB := int64(0)
	var got told
	l := NewLoop(LoopOptions{
		Configs: func() []Config { return configs },
		Lookup:  func(string) (Config, bool) { return cfg, true },
		Wants: func(time.Time) map[string][]Want {
			return map[string][]Want{"p": {
				{Member: Member{ID: "ns/a/m", Org: "a", Weight: 1, GPUs: 1, Demand: want["a"]}},
				{Member: Member{ID: "ns/b/m", Org: "b", Weight: 1, GPUs: 1, Demand: want["b"], Min: minB}},
			}, "later": {{Member: Member{ID: "ns/c/m", Org: "c", Weight: 1, GPUs: 1, Demand: 1}}},
				"early": {{Member: Member{ID: "ns/d/m", Org: "d", Weight: 1, GPUs: 1, Demand: 1}}}}
		},
		Now:      func() time.Time { return t0 },
		Observer: &got,
	})
	turn := func(i int) { l.Turn(t0.Add(time.Duration(i) * time.Second)) }
	turn(0)
	want["b"] = 4
	turn(1) // a holds its 4 this turn (its share comes down a turn later, the window being 0): b is capped at 0
	turn(2) // a gives 2 up, b gets them: a is capped now, b still is (no news)
	want["b"] = 0
	turn(3) // b asks for nothing: no longer capped
	minB = 6
	turn(4) // b's minimum alone exceeds the pool
	configs = append(configs, later)
	turn(5) // a pool set with a member it cannot seat
	wantTold := []string{
		"early ns/d/m capped=true share=0", // set since the loop began: told at its first turn
		"p ns/b/m capped=true share=0",
		"p ns/a/m capped=true share=2",
		"p ns/b/m capped=false share=2",
		"p overcommitted=true",
		"later ns/c/m capped=true share=0",
	}
	if !slices.Equal(got, wantTold) {
		t.Fatalf("told:\n%v\nwant:\n%v", got, wantTold)
	}
}
