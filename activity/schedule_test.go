package activity

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/orgscaler/orgscaler/hlc"
)

// An org with a warm schedule goes dormant when its window passes outside
// the schedule, wakes at the schedule's start by itself (watchers told, a
// transition with reason schedule), and goes dormant again at its end,
// since then. Its setting survives a restart.
func TestWarmScheduleWakesAndSleeps(t *testing.T) {
	withClock(t, t.TempDir(), func(t *testing.T, c *fakeClock, restart func(time.Duration)) {
		var transitions []Transition
		c.s.Subscribe(Subscriber{Transition: func(tr Transition) { transitions = append(transitions, tr) }})
		day := c.Now() // Thursday 1 January 2026, 00:00 UTC
		hour := time.Hour
		sched := "daily 09:00-17:00 UTC"
		if _, err := c.s.Update(context.Background(), "acme", Update{IdleWindow: &hour, WarmSchedule: &sched}); err != nil {
			t.Fatal(err)
		}
		w, _ := c.s.Watch("acme")
		defer w.Stop()
		c.advance(hour)
		if o, _ := c.s.Get("acme"); !o.Dormant() || !o.DormantSince.Equal(day.Add(hour)) {
			t.Fatalf("an hour after its last activity, outside its schedule: %+v; want dormant", o)
		}
		<-w.C()
		c.advance(8 * hour) // 09:00
		o, _ := c.s.Get("acme")
		if o.Dormant() || o.WokeBy != WakeSchedule || o.WarmSchedule.String() != sched {
			t.Fatalf("at the schedule's start: %+v; want woken by it", o)
		}
		select {
		case <-w.C():
		default:
			t.Fatal("watcher not told of the schedule's wake")
		}
		if got := o.DormantAt(c.Now()); !got.Equal(day.Add(17 * hour)) {
			t.Fatalf("DormantAt inside the schedule = %s; want its end", got)
		}
		c.advance(8*hour - time.Nanosecond)
		if o, _ := c.s.Get("acme"); o.Dormant() {
			t.Fatal("dormant before the schedule's end")
		}
		c.advance(time.Nanosecond)
		if o, _ := c.s.Get("acme"); !o.Dormant() || !o.DormantSince.Equal(day.Add(17*hour)) {
			t.Fatalf("at the schedule's end: %+v; want dormant since 17:00", o)
		}
		if len(transitions) != 3 || !transitions[1].Woke || transitions[1].Reason != WakeSchedule {
			t.Fatalf("transitions: %+v; want dormant, woken by the schedule, dormant", transitions)
		}
		restart(18 * hour) // down over the next morning: 11:00 on Friday
		if o, _ := c.s.Get("acme"); o.Dormant() || o.WarmSchedule.String() != sched {
			t.Fatalf("restarted inside a window: %+v; want active, with the schedule", o)
		}
	})
}

// A schedule is a setting like the others: last writer wins across
// replicas, a delete takes it, and the version 2 record of an org without
// one still reads.
func TestWarmScheduleMerges(t *testing.T) {
	early, late := "Mon 09:00-10:00 UTC", "Tue 09:00-10:00 UTC"
	var rec record
	if !mergeSettings(&rec, Change{WarmSchedule: &late, WarmScheduleAt: 20}, 0) ||
		mergeSettings(&rec, Change{WarmSchedule: &early, WarmScheduleAt: 10}, 0) || rec.Schedule.String() != late {
		t.Fatalf("last writer wins: %q", rec.Schedule.String())
	}
	back, err := unmarshalRecord(rec.marshal())
	if err != nil || back.Schedule.String() != late || back.ScheduleAt != 20 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if mergeDelete(&rec, hlc.Stamp(20)); rec.Schedule != nil {
		t.Fatal("a delete after the schedule takes it")
	}
	v2 := []byte{2, 0}
	for _, v := range []int64{100, 50, 0, 0, 0, 0} {
		v2 = binary.AppendVarint(v2, v)
	}
	if r, err := unmarshalRecord(v2); err != nil || r.Schedule != nil || r.LastActivity != 100 {
		t.Fatalf("version 2 record: %+v %v", r, err)
	}
	bad := "Mon 09:00-10:00 Nowhere/Land"
	if _, err := (&Store{}).Update(context.Background(), "x", Update{WarmSchedule: &bad}); err == nil {
		t.Fatal("a schedule that does not parse was accepted")
	}
}

// A pool weight is a setting like the others: last writer wins, weight 1
// is the default (stored and digested as never set), a delete takes it,
// and a version 3 record reads as weight 1.
func TestPoolWeightMerges(t *testing.T) {
	two, one, five := int64(2), int64(1), int64(5)
	var rec record
	if !mergeSettings(&rec, Change{PoolWeight: &two, PoolWeightAt: 20}, 0) ||
		mergeSettings(&rec, Change{PoolWeight: &five, PoolWeightAt: 10}, 0) || rec.poolWeight() != 2 {
		t.Fatalf("last writer wins: %d", rec.poolWeight())
	}
	back, err := unmarshalRecord(rec.marshal())
	if err != nil || back.poolWeight() != 2 || back.PoolWeightAt != 20 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if mergeSettings(&rec, Change{PoolWeight: &one, PoolWeightAt: 30}, 0); rec.PoolWeight != 0 || rec.poolWeight() != 1 {
		t.Fatalf("weight 1 is the default: stored %d", rec.PoolWeight)
	}
	if mergeDelete(&rec, hlc.Stamp(30)); rec.PoolWeightAt != 0 {
		t.Fatal("a delete after the weight takes it")
	}
	v3 := []byte{3, 0}
	for _, v := range []int64{100, 50, 0, 0, 0, 0, 0} {
		v3 = binary.AppendVarint(v3, v)
	}
	v3 = binary.AppendUvarint(v3, 0)
	if r, err := unmarshalRecord(v3); err != nil || r.poolWeight() != 1 || r.LastActivity != 100 {
		t.Fatalf("version 3 record: %+v %v", r, err)
	}
	bad := int64(0)
	if _, err := (&Store{}).Update(context.Background(), "x", Update{PoolWeight: &bad}); err == nil {
		t.Fatal("a pool weight of 0 was accepted")
	}
}

// The dormancy timer fires each entry at its instant, not later: the
// store's tests fire due entries by hand, so this is what bounds the real
// timer (OrgDormant Events, Knative's min-scale and KEDA's answers all
// follow it). In a synctest bubble the instants are exact.
func TestSchedulerFiresOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		fired := map[string]time.Duration{}
		s := newScheduler(time.Now, func(org string, _ time.Time) {
			mu.Lock()
			fired[org] = time.Since(start)
			mu.Unlock()
		})
		done := make(chan struct{})
		go s.run(done)
		s.add("later", start.Add(20*time.Second))
		s.add("soon", start.Add(5*time.Second))
		s.addAll([]due{{at: stampOf(start.Add(time.Hour)), org: "much-later"}})
		time.Sleep(time.Hour + time.Second)
		synctest.Wait()
		close(done)
		mu.Lock()
		defer mu.Unlock()
		for org, want := range map[string]time.Duration{"soon": 5 * time.Second, "later": 20 * time.Second, "much-later": time.Hour} {
			if got, ok := fired[org]; !ok || got != want {
				t.Errorf("%s fired at %v (fired: %v); want exactly %v", org, got, ok, want)
			}
		}
	})
}
