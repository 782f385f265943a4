package pool

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The figures: 8 orgs' models woken at once at 2/30s are 2, 4, 6
// and 8 active at 0, 30, 60 and 90 s; the queue says each one's place,
// and when the next turn comes.
func TestWakesPace(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	w := Wakes{N: 2, Per: 30 * time.Second}
	waiting := map[string]bool{}
	var all []Waiter
	for i := range 8 {
		id := fmt.Sprintf("org%d/model", i)
		all = append(all, Waiter{ID: id, Weight: 1})
		waiting[id] = true
	}
	active := 0
	for step := range 100 { // a step a second
		now := t0.Add(time.Duration(step) * time.Second)
		var want []Waiter
		for _, x := range all {
			if waiting[x.ID] {
				want = append(want, x)
			}
		}
		wake, queue, next := w.Step(now, want)
		for _, id := range wake {
			delete(waiting, id)
		}
		active += len(wake)
		if step == 0 && (len(queue) != 6 || !next.Equal(t0.Add(30*time.Second))) {
			t.Fatalf("at 0s: queue %v, next %s; want 6 waiting, the next turn at 30s", queue, next.Sub(t0))
		}
		for at, want := range map[int]int{0: 2, 29: 2, 30: 4, 59: 4, 60: 6, 90: 8, 99: 8} {
			if step == at && active != want {
				t.Fatalf("at %ds: %d active; want %d", step, active, want)
			}
		}
	}
}

// Members with backlog go first, then heavier orgs, then those that
// waited longer; one that stops wanting leaves the queue; without a rate
// everyone wakes at once.
func TestWakesOrder(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	w := Wakes{N: 1, Per: time.Minute}
	// a-first wakes (the one turn, by ID); z-early waits from t0.
	if wake, _, _ := w.Step(t0, []Waiter{{ID: "z-early", Weight: 1}, {ID: "a-first", Weight: 1}}); !slices.Equal(wake, []string{"a-first"}) {
		t.Fatalf("woke %v; want a-first", wake)
	}
	_, queue, _ := w.Step(t0.Add(time.Second), []Waiter{
		{ID: "a-late", Weight: 1}, {ID: "z-early", Weight: 1}, {ID: "heavy", Weight: 3}, {ID: "busy", Weight: 1, Backlog: true},
	})
	if want := []string{"busy", "heavy", "z-early", "a-late"}; !slices.Equal(queue, want) {
		t.Fatalf("queue %v; want %v (backlog, then weight, then the longer wait before the ID)", queue, want)
	}
	_, queue, _ = w.Step(t0.Add(2*time.Second), []Waiter{{ID: "a-late", Weight: 1}, {ID: "z-early", Weight: 1}})
	if !slices.Equal(queue, []string{"z-early", "a-late"}) {
		t.Fatalf("after busy and heavy stopped wanting: %v", queue)
	}
	free := Wakes{}
	wake, queue, _ := free.Step(t0, []Waiter{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	if len(wake) != 3 || len(queue) != 0 {
		t.Fatalf("no rate: woke %v, queued %v; want all at once", wake, queue)
	}
}
