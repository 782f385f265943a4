package pools

import (
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/pool"
)

// Bounds of a pool's settings: past them a value is surely a typo.
const (
	MaxPools              = 256
	MaxGPUs               = 1 << 20
	MaxWakeCount          = 10_000
	MinWakePer            = time.Second
	MaxWakePer            = time.Hour
	MaxStabilization      = time.Hour
	DefaultStabilization  = time.Minute
	NameExpected          = pool.NameExpected
	tombstoneTTL          = 8 * 24 * time.Hour
	wakeCountExpected     = "0 (no pacing) to 10000"
	stabilizationExpected = "0s to 1h"
)

// ValidName reports whether name can name a pool.
func ValidName(name string) bool { return pool.ValidName(name) }

// Pool is one pool's definition.
type Pool struct {
	Name string
	GPUs int64
	// WakeCount members at most go from zero to active per WakePer; 0:
	// wakes are not paced.
	WakeCount     int
	WakePer       time.Duration
	Stabilization time.Duration
	// At is when the definition was last written, by the replica in its
	// low bits: replicas keep the later one, whole.
	At      hlc.Stamp
	Deleted bool // a tombstone: a later set revives the pool, nothing older does
}

// Update is a change of a pool's settings: each set field replaces the
// pool's; a new pool needs GPUs.
type Update struct {
	GPUs          *int64
	WakeCount     *int // with WakePer; 0 turns pacing off
	WakePer       time.Duration
	Stabilization *time.Duration
}

// FieldError names the setting that is wrong, its value and what was
// expected; the API turns it into InvalidArgument.
type FieldError struct {
	Field, Value, Expected string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s is %s: expected %s", e.Field, e.Value, e.Expected)
}

// apply is p changed by u, checked.
func (u Update) apply(p Pool) (Pool, error) {
	if u.GPUs != nil {
		if *u.GPUs < 0 || *u.GPUs > MaxGPUs {
			return p, &FieldError{"gpus", fmt.Sprint(*u.GPUs), fmt.Sprintf("0 to %d", MaxGPUs)}
		}
		p.GPUs = *u.GPUs
	}
	if u.WakeCount != nil {
		n := *u.WakeCount
		switch {
		case n < 0 || n > MaxWakeCount:
			return p, &FieldError{"wake_count", fmt.Sprint(n), wakeCountExpected}
		case n > 0 && (u.WakePer < MinWakePer || u.WakePer > MaxWakePer):
			return p, &FieldError{"wake_per", u.WakePer.String(), fmt.Sprintf("%s to %s when wake_count is set", MinWakePer, MaxWakePer)}
		case n == 0:
			p.WakeCount, p.WakePer = 0, 0
		default:
			p.WakeCount, p.WakePer = n, u.WakePer
		}
	}
	if u.Stabilization != nil {
		if d := *u.Stabilization; d < 0 || d > MaxStabilization {
			return p, &FieldError{"stabilization", d.String(), stabilizationExpected}
		}
		p.Stabilization = *u.Stabilization
	}
	return p, nil
}

// valid reports whether a definition from another replica (or a disk)
// is one this replica could have written.
func (p Pool) valid() bool {
	return ValidName(p.Name) && p.At > 0 && p.GPUs >= 0 && p.GPUs <= MaxGPUs &&
		p.WakeCount >= 0 && p.WakeCount <= MaxWakeCount && (p.WakeCount == 0 || p.WakePer >= MinWakePer && p.WakePer <= MaxWakePer) &&
		p.Stabilization >= 0 && p.Stabilization <= MaxStabilization
}

// newer reports whether p replaces q: a later stamp, and on a tie (two
// replicas sharing stamp bits) the greater settings, so every replica
// keeps the same.
func (p Pool) newer(q Pool) bool {
	if p.At != q.At {
		return p.At > q.At
	}
	a, b := p.key(), q.key()
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return false
}

func (p Pool) key() [5]int64 {
	del := int64(0)
	if p.Deleted {
		del = 1
	}
	return [5]int64{del, p.GPUs, int64(p.WakeCount), int64(p.WakePer), int64(p.Stabilization)}
}

// WakeRate spells the pacing as scalerctl takes it: "2/30s", or "" when
// wakes are not paced.
func (p Pool) WakeRate() string {
	if p.WakeCount == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%s", p.WakeCount, p.WakePer)
}
