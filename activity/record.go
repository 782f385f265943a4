package activity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/schedule"
)

// recordVersion is the first byte of every stored org, so the format can
// change without guessing. Version 1 had no settings stamps; its
// non-default settings read as written at the earliest instant. Version 2
// had no warm schedule, version 3 no pool weight.
const recordVersion = 4

const flagScaleToZeroOff = 1 << 0

// record is what Badger holds for an org, and what memory holds of it.
type record struct {
	LastActivity stamp
	FirstSeen    stamp
	DormantSince stamp
	IdleWindow   time.Duration // zero: the scaler's default
	ScaleToZero  bool
	// PoolWeight is the org's weight in GPU pools (0: the default, 1);
	// beside the bool, in its padding: a million orgs pay only for its
	// stamp.
	PoolWeight int32
	// When each setting was last written (zero: never, the default):
	// settings are last-writer-wins by these stamps across replicas.
	ScaleToZeroAt hlc.Stamp
	IdleWindowAt  hlc.Stamp
	// Schedule is the org's warm schedule (nil: none, as most orgs).
	Schedule     *schedule.Schedule
	ScheduleAt   hlc.Stamp
	PoolWeightAt hlc.Stamp
}

// stamp is an instant in Unix nanoseconds, zero for none: a third of a
// time.Time, and nothing for the garbage collector to follow, times a
// million orgs.
type stamp int64

func stampOf(t time.Time) stamp { return stamp(unixNano(t)) }

// Time is the instant as a time.Time (zero for none).
func (s stamp) Time() time.Time { return fromUnixNano(int64(s)) }

// IsZero reports whether the instant is unset.
func (s stamp) IsZero() bool { return s == 0 }

// Add is s + d, as a time.Time.
func (s stamp) Add(d time.Duration) time.Time { return s.Time().Add(d) }

func (r record) marshal() []byte {
	b := make([]byte, 0, 1+1+8*binary.MaxVarintLen64)
	b = append(b, recordVersion)
	var flags byte
	if !r.ScaleToZero {
		flags |= flagScaleToZeroOff
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, int64(r.LastActivity))
	b = binary.AppendVarint(b, int64(r.FirstSeen))
	b = binary.AppendVarint(b, int64(r.DormantSince))
	b = binary.AppendVarint(b, int64(r.IdleWindow))
	b = binary.AppendVarint(b, int64(r.ScaleToZeroAt))
	b = binary.AppendVarint(b, int64(r.IdleWindowAt))
	b = binary.AppendVarint(b, int64(r.ScheduleAt))
	text := r.Schedule.String()
	b = binary.AppendUvarint(b, uint64(len(text)))
	b = append(b, text...)
	b = binary.AppendVarint(b, int64(r.PoolWeight))
	return binary.AppendVarint(b, int64(r.PoolWeightAt))
}

var errCorrupt = errors.New("corrupt org record")

func unmarshalRecord(b []byte) (record, error) {
	if len(b) < 2 {
		return record{}, fmt.Errorf("%w: %d bytes", errCorrupt, len(b))
	}
	if b[0] < 1 || b[0] > recordVersion {
		return record{}, fmt.Errorf("%w: unknown version %d (this scaler reads versions 1 to %d)", errCorrupt, b[0], recordVersion)
	}
	version := b[0]
	r := record{ScaleToZero: b[1]&flagScaleToZeroOff == 0}
	fields := [...]int{1: 4, 2: 6, 3: 7, 4: 7}[version]
	b = b[2:]
	var vals [7]int64
	for i := range fields {
		v, n := binary.Varint(b)
		if n <= 0 {
			return record{}, fmt.Errorf("%w: truncated field %d", errCorrupt, i)
		}
		vals[i], b = v, b[n:]
	}
	if version >= 3 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return record{}, fmt.Errorf("%w: truncated warm schedule", errCorrupt)
		}
		sched, err := schedule.Parse(string(b[k : k+int(n)]))
		if err != nil {
			return record{}, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		r.Schedule, r.ScheduleAt, b = sched, hlc.Stamp(vals[6]), b[k+int(n):]
	}
	if version >= 4 {
		var w [2]int64
		for i := range w {
			v, n := binary.Varint(b)
			if n <= 0 {
				return record{}, fmt.Errorf("%w: truncated pool weight", errCorrupt)
			}
			w[i], b = v, b[n:]
		}
		if w[0] < 0 || w[0] > MaxPoolWeight {
			return record{}, fmt.Errorf("%w: pool weight %d", errCorrupt, w[0])
		}
		r.PoolWeight, r.PoolWeightAt = int32(w[0]), hlc.Stamp(w[1])
	}
	if len(b) != 0 {
		return record{}, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(b))
	}
	if vals[3] < 0 {
		return record{}, fmt.Errorf("%w: negative idle window", errCorrupt)
	}
	r.LastActivity, r.FirstSeen, r.DormantSince = stamp(vals[0]), stamp(vals[1]), stamp(vals[2])
	r.IdleWindow = time.Duration(vals[3])
	r.ScaleToZeroAt, r.IdleWindowAt = hlc.Stamp(vals[4]), hlc.Stamp(vals[5])
	if version == 1 {
		// Settings made before stamps existed count as written at the
		// earliest instant: replicated, and beaten by any later write.
		if !r.ScaleToZero {
			r.ScaleToZeroAt = 1
		}
		if r.IdleWindow != 0 {
			r.IdleWindowAt = 1
		}
	}
	return r, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
