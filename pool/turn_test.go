package pool

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The figure: 8 orgs' models woken at once in a pool of 8 GPUs at
// 2/30s are 2, 4, 6, 8 active at 0, 30, 60 and 90 s, and the waiting ones
// are queued in order.
func TestTurnPacesWakes(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	cfg := Config{Name: "gpus", GPUs: 8, WakeCount: 2, WakePer: 30 * time.Second, Stabilization: time.Minute}
	wants := func(demand int64) []Want {
		var ws []Want
		for i := range 8 {
			id := fmt.Sprintf("m%d", i)
			ws = append(ws, Want{Member: Member{ID: id, Org: id, Weight: 1, GPUs: 1, Demand: demand}})
		}
		return ws
	}
	var l Live
	if st := l.Turn(t0.Add(-time.Second), cfg, wants(0)); st.Granted != 0 { // known, at zero
		t.Fatalf("at zero: %d GPUs granted", st.Granted)
	}
	for sec := 0; sec <= 100; sec++ {
		st := l.Turn(t0.Add(time.Duration(sec)*time.Second), cfg, wants(1))
		active := 0
		for _, s := range st.Seats() {
			if s.Share > 0 {
				active++
			}
		}
		if want := min(8, 2*(sec/30+1)); active != want {
			t.Fatalf("at %ds: %d active; want %d", sec, active, want)
		}
		if len(st.Queue) != 8-active || st.Granted > cfg.GPUs {
			t.Fatalf("at %ds: queue %v, granted %d: want %d waiting, at most 8 GPUs", sec, st.Queue, st.Granted, 8-active)
		}
		if sec == 0 {
			if at(st, "m2").Queued != 1 || at(st, "m7").Queued != 6 || !st.Next.Equal(t0.Add(30*time.Second)) {
				t.Fatalf("at 0s: m2 #%d, m7 #%d, next turn %s; want #1, #6, at 30s", at(st, "m2").Queued, at(st, "m7").Queued, st.Next)
			}
		}
	}
}

// A scaler that starts takes its pools' members as they are: its first
// turn paces nobody (it did not see them at zero), so a restart does not
// scale running workloads down to the wake rate.
func TestTurnFirstPacesNobody(t *testing.T) {
	cfg := Config{Name: "gpus", GPUs: 8, WakeCount: 1, WakePer: time.Hour, Stabilization: time.Minute}
	var wants []Want
	for i := range 4 {
		id := fmt.Sprintf("m%d", i)
		wants = append(wants, Want{Member: Member{ID: id, Org: id, Weight: 1, GPUs: 1, Demand: 2}})
	}
	var l Live
	if st := l.Turn(time.Unix(1_800_000_000, 0), cfg, wants); st.Granted != 8 || len(st.Queue) != 0 {
		t.Fatalf("first turn: %d GPUs granted, queue %v; want all 8, none", st.Granted, st.Queue)
	}
}

// The wake rate counts members that actually go from zero to a share: one
// woken while its GPUs are still someone else's (inside their window)
// waits without using a turn, and two never wake in the same window.
func TestTurnPacesActivations(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	cfg := Config{Name: "gpus", GPUs: 4, WakeCount: 1, WakePer: 30 * time.Second, Stabilization: time.Minute}
	a := Want{Member: Member{ID: "a", Org: "a", Weight: 1, GPUs: 1, Demand: 4}}
	idle := func(id string, demand int64) Want {
		return Want{Member: Member{ID: id, Org: id, Weight: 1, GPUs: 1, Demand: demand}}
	}
	var l Live
	l.Turn(t0, cfg, []Want{a, idle("b", 0), idle("c", 0)}) // a holds all 4
	var woke []string
	seated := map[string]bool{}
	for sec := 1; sec <= 150; sec++ {
		st := l.Turn(t0.Add(time.Duration(sec)*time.Second), cfg, []Want{a, idle("b", 2), idle("c", 2)})
		for _, id := range []string{"b", "c"} {
			if at(st, id).Share > 0 && !seated[id] {
				seated[id] = true
				woke = append(woke, fmt.Sprintf("%s@%d", id, sec))
			}
		}
	}
	// a's share comes down at 61 s (its window): b wakes then, c one wake
	// window later.
	if fmt.Sprint(woke) != "[b@61 c@91]" {
		t.Fatalf("woke %v; want [b@61 c@91]", woke)
	}
}

// A full pool queues the members it cannot seat, backlog first, then by
// weight; a member with work waiting wakes before an idle one once a
// share is given up.
func TestTurnQueuesWhenFull(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	cfg := Config{Name: "small", GPUs: 2, Stabilization: time.Minute}
	a := Want{Member: Member{ID: "a", Org: "a", Weight: 1, GPUs: 2, Demand: 1}}
	var l Live
	if st := l.Turn(t0, cfg, []Want{a}); at(st, "a").Share != 1 {
		t.Fatalf("a alone: share %d; want 1", at(st, "a").Share)
	}
	b := Want{Member: Member{ID: "b", Org: "b", Weight: 3, GPUs: 1, Demand: 1}}
	c := Want{Member: Member{ID: "c", Org: "c", Weight: 1, GPUs: 1, Demand: 1}, Backlog: true}
	st := l.Turn(t0.Add(time.Second), cfg, []Want{a, b, c})
	// Fair shares now: b and c 1 each, a none; a keeps its 2 GPUs for the
	// window, so b and c wait: c first (backlog), then b.
	if at(st, "a").Share != 1 || at(st, "b").Share != 0 || at(st, "c").Share != 0 || fmt.Sprint(st.Queue) != "[c b]" {
		t.Fatalf("full: a %d b %d c %d, queue %v; want 1/0/0, [c b]", at(st, "a").Share, at(st, "b").Share, at(st, "c").Share, st.Queue)
	}
	st = l.Turn(t0.Add(62*time.Second), cfg, []Want{a, b, c})
	// a's fair share is now none: it waits, at the head of the queue.
	if at(st, "a").Share != 0 || at(st, "b").Share != 1 || at(st, "c").Share != 1 || fmt.Sprint(st.Queue) != "[a]" {
		t.Fatalf("after the window: a %d b %d c %d, queue %v; want 0/1/1, [a]", at(st, "a").Share, at(st, "b").Share, at(st, "c").Share, st.Queue)
	}
}

// Whatever members come, go and want, with or without a wake rate, no
// turn grants more than the pool (unless the minimums alone exceed it),
// every waiting member has zero, and every member that wants replicas
// and has none is waiting.
func TestTurnProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 23))
	t0 := time.Unix(1_800_000_000, 0)
	for round := range 200 {
		cfg := Config{Name: "p", GPUs: r.Int64N(20), Stabilization: time.Duration(r.IntN(4)) * 10 * time.Second}
		if r.IntN(2) == 0 {
			cfg.WakeCount, cfg.WakePer = 1+r.IntN(3), time.Duration(1+r.IntN(30))*time.Second
		}
		var l Live
		for step := range 100 {
			var wants []Want
			for i := range 8 {
				if r.IntN(5) == 0 {
					continue
				}
				wants = append(wants, Want{Member: Member{ID: fmt.Sprint(i), Org: fmt.Sprint(i % 3), Weight: 1 + int64(i%2),
					GPUs: int64(i % 3), Demand: r.Int64N(6), Min: int64(i / 7)}, Backlog: r.IntN(2) == 0})
			}
			st := l.Turn(t0.Add(time.Duration(step)*5*time.Second), cfg, wants)
			if st.Granted > cfg.GPUs && !st.Overcommitted {
				t.Fatalf("round %d step %d: %d GPUs granted of %d", round, step, st.Granted, cfg.GPUs)
			}
			for _, s := range st.Seats() {
				id := s.ID
				if s.Queued > 0 && s.Share != 0 {
					t.Fatalf("round %d step %d: %s waits with %d replicas", round, step, id, s.Share)
				}
				if s.Demand > 0 && s.Share == 0 && s.Queued == 0 {
					t.Fatalf("round %d step %d: %s wants %d and has none, but is not queued", round, step, id, s.Demand)
				}
			}
		}
	}
}

// at is id's seat in st (zero when it has none).
func at(st State, id string) Seat {
	s, _ := st.Seat(id)
	return s
}
