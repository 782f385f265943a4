// Package clock gives the process one time source that wall-clock steps
// never move: the wall time when the process started plus the monotonic
// time elapsed since. Idle windows, dormancy instants, hint lifetimes and
// a backlog point's age are all measured on it, so an NTP step, a
// hypervisor resuming a paused VM or an operator's `date -s` changes none
// of them beyond what real elapsed time says. Steps of the wall clock are
// still detected, logged and counted, so an operator sees them.
package clock

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StepThreshold is the least jump of the wall clock against the monotonic
// clock that counts as a step: NTP slews smaller differences, far slower.
const StepThreshold = time.Second

// Options configure a Clock; every field is optional.
type Options struct {
	// Wall reads the system's wall clock (default time.Now, whose reading
	// also carries the monotonic clock).
	Wall func() time.Time
	// Elapsed is the monotonic time since the clock was made (default: the
	// monotonic reading of time.Now against the start's).
	Elapsed func() time.Duration
	Logger  *slog.Logger
	// Registerer, when set, gets orgscaler_clock_steps_total and
	// orgscaler_clock_wall_offset_seconds.
	Registerer prometheus.Registerer
}

// Clock is the process's time source. Its methods are safe for concurrent
// use.
type Clock struct {
	start   time.Time // the wall time at the start, without a monotonic reading
	wall    func() time.Time
	elapsed func() time.Duration
	log     *slog.Logger
	steps   *prometheus.CounterVec
	offsetG prometheus.Gauge

	mu     sync.Mutex
	offset time.Duration // the wall clock's last known offset from Now
}

// New returns a clock reading the wall clock's time now.
func New(o Options) *Clock {
	if o.Wall == nil {
		o.Wall = time.Now
	}
	if o.Elapsed == nil {
		began := time.Now()
		o.Elapsed = func() time.Duration { return time.Since(began) }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Clock{start: o.Wall().Round(0).Add(-o.Elapsed()), wall: o.Wall, elapsed: o.Elapsed,
		log: o.Logger.With("component", "clock"),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orgscaler_clock_steps_total",
			Help: "Steps of the system's wall clock against the monotonic clock (an NTP step, a resumed VM, date -s), by direction (forward, backward). Elapsed times are measured on the monotonic clock and do not move with them."},
			[]string{"direction"}),
		offsetG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "orgscaler_clock_wall_offset_seconds",
			Help: "How far the system's wall clock is from the scaler's clock (the wall clock at start plus monotonic time since): the sum of the steps since the start."}),
	}
	c.steps.WithLabelValues("forward")
	c.steps.WithLabelValues("backward")
	if o.Registerer != nil {
		o.Registerer.MustRegister(c.steps, c.offsetG)
	}
	return c
}

// Now is the wall time at the start plus the monotonic time elapsed since.
// Its result carries no monotonic reading: it is a point on this clock,
// stored and compared as it is.
func (c *Clock) Now() time.Time { return c.start.Add(c.elapsed()) }

// Check compares the wall clock with Now and, when it moved by
// StepThreshold or more since the last check, logs and counts the step. It
// returns the wall clock's offset from Now.
func (c *Clock) Check() time.Duration {
	offset := c.wall().Round(0).Sub(c.Now())
	c.mu.Lock()
	step := offset - c.offset
	if step.Abs() < StepThreshold {
		c.mu.Unlock()
		return offset
	}
	c.offset = offset
	c.mu.Unlock()
	dir := "forward"
	if step < 0 {
		dir = "backward"
	}
	c.steps.WithLabelValues(dir).Inc()
	c.offsetG.Set(offset.Seconds())
	c.log.Warn("the system's wall clock stepped; idle windows, dormancy, hints and backlog ages keep following elapsed time, and warm schedules the scaler's clock, until a restart takes the wall clock's time again",
		"step", step.Round(time.Millisecond), "wall_offset", offset.Round(time.Millisecond))
	return offset
}

// Watch checks every interval until ctx ends.
func (c *Clock) Watch(ctx context.Context, every time.Duration) {
	Every(ctx, every, func() { c.Check() })
}

// Every calls f every interval (the first time one interval from now)
// until ctx ends: the loop of every periodic chore.
func Every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
