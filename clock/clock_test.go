package clock

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orgscaler/orgscaler/internal/clocktest"
)

// Steps of the wall clock either way move Now by nothing; elapsed time
// moves it by exactly that; each step is counted once, by direction.
func TestStepsDoNotMoveNow(t *testing.T) {
	f := clocktest.NewSystem(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	f.Advance(5 * time.Second)
	reg := prometheus.NewRegistry()
	c := New(Options{Wall: f.Wall, Elapsed: f.Elapsed, Registerer: reg})
	start := c.Now()
	if !start.Equal(f.Wall()) {
		t.Fatalf("Now at the start is %v, want the wall clock's %v", start, f.Wall())
	}
	f.Advance(10 * time.Minute)
	f.Step(time.Hour)
	if got := c.Now().Sub(start); got != 10*time.Minute {
		t.Fatalf("after 10m elapsed and a 1h step forward, Now moved %s; want 10m", got)
	}
	if off := c.Check(); off != time.Hour {
		t.Fatalf("offset %s after a 1h step, want 1h", off)
	}
	c.Check() // the same step is not counted again
	f.Advance(time.Minute)
	f.Step(-2 * time.Hour)
	if got := c.Now().Sub(start); got != 11*time.Minute {
		t.Fatalf("after 11m elapsed and a 2h step back, Now moved %s; want 11m", got)
	}
	f.Step(300 * time.Millisecond) // slewed, not stepped
	if off := c.Check(); off != -time.Hour+300*time.Millisecond {
		t.Fatalf("offset %s, want -59m59.7s", off)
	}
	c.Check()
	if fw, bw := testutil.ToFloat64(c.steps.WithLabelValues("forward")), testutil.ToFloat64(c.steps.WithLabelValues("backward")); fw != 1 || bw != 1 {
		t.Fatalf("steps counted: %v forward, %v backward; want 1 and 1", fw, bw)
	}
	if v := testutil.ToFloat64(c.offsetG); v != -3600+0.3 && v != -3600 {
		t.Fatalf("offset gauge %v", v)
	}
}

// With the real clocks, Now keeps step with time.Now and carries no
// monotonic reading (it is stored and compared as a point on this clock).
func TestRealClock(t *testing.T) {
	c := New(Options{})
	a, now, b := c.Now(), time.Now(), c.Now()
	if d := now.Sub(a); d < -time.Millisecond || d > time.Second {
		t.Fatalf("Now is %s from time.Now", d)
	}
	if b.Before(a) || a.String() != a.Round(0).String() {
		t.Fatalf("Now went back (%v, %v) or carries a monotonic reading (%s)", a, b, a.String())
	}
}
