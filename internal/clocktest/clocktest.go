// Package clocktest provides a clock that moves only when a test moves it,
// for code that takes its time as a `func() time.Time`.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a manual clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// System is a machine's two clocks as the scaler's clock.Clock reads them:
// a wall clock a test can step, and a monotonic clock that moves only with
// Advance (real elapsed time).
type System struct {
	mu      sync.Mutex
	wall    time.Time
	elapsed time.Duration
}

// NewSystem returns clocks whose wall clock reads t.
func NewSystem(t time.Time) *System { return &System{wall: t} }

// Wall reads the wall clock.
func (s *System) Wall() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wall
}

// Elapsed reads the monotonic clock.
func (s *System) Elapsed() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.elapsed
}

// Advance lets d pass: both clocks move.
func (s *System) Advance(d time.Duration) {
	s.mu.Lock()
	s.wall, s.elapsed = s.wall.Add(d), s.elapsed+d
	s.mu.Unlock()
}

// Step moves the wall clock alone, as NTP stepping it, a VM resumed or
// `date -s` do.
func (s *System) Step(d time.Duration) {
	s.mu.Lock()
	s.wall = s.wall.Add(d)
	s.mu.Unlock()
}
