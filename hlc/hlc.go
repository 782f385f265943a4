// Package hlc is a hybrid logical clock: stamps that follow the wall clock,
// never go backwards, order every change one replica makes, and move past
// any stamp seen from another replica. Replicas use them to settle
// last-writer-wins: the later stamp wins, and the replica bits folded into
// each stamp break ties between replicas.
package hlc

import (
	"hash/fnv"
	"sync"
	"time"
)

// Stamp is an instant in Unix nanoseconds whose lowest ReplicaBits bits
// name the replica that made it; zero is "never".
type Stamp int64

// ReplicaBits is how many low bits of a stamp name its replica: stamps
// are microsecond-grained, and two replicas share bits with a chance of 1
// in 1024, and then the values written break the tie).
const ReplicaBits = 10

const replicaMask = 1<<ReplicaBits - 1

// Time is the stamp's instant.
func (s Stamp) Time() time.Time { return time.Unix(0, int64(s)).UTC() }

// Clock makes stamps for one replica.
type Clock struct {
	now     func() time.Time
	replica int64

	mu    sync.Mutex
	last  int64
	ahead time.Duration
}

// New returns a clock for replica id, reading the wall clock from now
// (time.Now when nil).
func New(replica string, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(replica))
	return &Clock{now: now, replica: int64(h.Sum32() & replicaMask)}
}

// Now returns a stamp later than every stamp this clock has made or seen.
func (c *Clock) Now() Stamp {
	wall := c.now().UnixNano() &^ replicaMask
	c.mu.Lock()
	defer c.mu.Unlock()
	next := max(wall, (c.last&^replicaMask)+replicaMask+1)
	c.last = next | c.replica
	return Stamp(c.last)
}

// Observe moves the clock past s, a stamp from another replica, but never
// further ahead of the wall clock than the bound HoldAhead set: a replica
// with a fast clock (or a forged stamp) cannot drag this one's stamps
// into the future, nor overflow them.
func (c *Clock) Observe(s Stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ahead > 0 {
		s = min(s, Stamp(c.now().UnixNano()+int64(c.ahead)))
	}
	if int64(s) > c.last {
		c.last = int64(s)
	}
}

// HoldAhead bounds how far ahead of the wall clock Observe may move this
// clock (0: no bound).
func (c *Clock) HoldAhead(d time.Duration) {
	c.mu.Lock()
	c.ahead = d
	c.mu.Unlock()
}
