package hlc

import (
	"math"
	"testing"
	"time"
)

func TestStampsOrderAndCarryTheReplica(t *testing.T) {
	wall := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return wall } // the wall clock stands still
	a, b := New("scaler-0", now), New("scaler-1", now)
	first := a.Now()
	second := a.Now()
	if second <= first {
		t.Fatalf("stamps must grow even when the wall clock stands still: %d then %d", first, second)
	}
	if int64(first)&replicaMask != int64(second)&replicaMask {
		t.Fatal("one replica's stamps carry the same replica bits")
	}
	if int64(a.Now())&replicaMask == int64(b.Now())&replicaMask {
		t.Fatal("scaler-0 and scaler-1 should have different replica bits")
	}
	// A stamp seen from a replica whose clock is ahead moves ours past it.
	ahead := Stamp(wall.Add(time.Hour).UnixNano())
	a.Observe(ahead)
	if s := a.Now(); s <= ahead {
		t.Fatalf("after observing %d, want a later stamp, got %d", ahead, s)
	}
	if got := first.Time(); got.Sub(wall) > time.Microsecond {
		t.Fatalf("a stamp is within a microsecond of the wall clock: %v vs %v", got, wall)
	}
}

// Held to a bound, a stamp far ahead (a fast clock, or a forged MaxInt64)
// moves the clock no further than the bound, and the next stamp neither
// overflows nor lands beyond it.
func TestObserveHeldAhead(t *testing.T) {
	wall := time.Unix(1_800_000_000, 0)
	c := New("scaler-0", func() time.Time { return wall })
	c.HoldAhead(30 * time.Second)
	c.Observe(Stamp(math.MaxInt64))
	s := c.Now()
	if s < 0 || s.Time().Sub(wall) > 30*time.Second+5*time.Microsecond {
		t.Fatalf("after observing MaxInt64 held to 30s, the next stamp is %d (%v ahead)", s, s.Time().Sub(wall))
	}
}
