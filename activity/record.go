package activity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// recordVersion is the first byte of every stored org, so the format can
// change without guessing.
const recordVersion = 1

const flagScaleToZeroOff = 1 << 0

// record is what Badger holds for an org. Times are Unix nanoseconds, zero
// when unset.
type record struct {
	LastActivity time.Time
	FirstSeen    time.Time
	DormantSince time.Time
	IdleWindow   time.Duration // zero: the scaler's default
	ScaleToZero  bool
}

func (r record) marshal() []byte {
	b := make([]byte, 0, 1+1+4*binary.MaxVarintLen64)
	b = append(b, recordVersion)
	var flags byte
	if !r.ScaleToZero {
		flags |= flagScaleToZeroOff
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, unixNano(r.LastActivity))
	b = binary.AppendVarint(b, unixNano(r.FirstSeen))
	b = binary.AppendVarint(b, unixNano(r.DormantSince))
	b = binary.AppendVarint(b, int64(r.IdleWindow))
	return b
}

var errCorrupt = errors.New("corrupt org record")

func unmarshalRecord(b []byte) (record, error) {
	if len(b) < 2 {
		return record{}, fmt.Errorf("%w: %d bytes", errCorrupt, len(b))
	}
	if b[0] != recordVersion {
		return record{}, fmt.Errorf("%w: unknown version %d (this scaler reads version %d)", errCorrupt, b[0], recordVersion)
	}
	r := record{ScaleToZero: b[1]&flagScaleToZeroOff == 0}
	b = b[2:]
	var vals [4]int64
	for i := range vals {
		v, n := binary.Varint(b)
		if n <= 0 {
			return record{}, fmt.Errorf("%w: truncated field %d", errCorrupt, i)
		}
		vals[i], b = v, b[n:]
	}
	if len(b) != 0 {
		return record{}, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(b))
	}
	if vals[3] < 0 {
		return record{}, fmt.Errorf("%w: negative idle window", errCorrupt)
	}
	r.LastActivity, r.FirstSeen, r.DormantSince = fromUnixNano(vals[0]), fromUnixNano(vals[1]), fromUnixNano(vals[2])
	r.IdleWindow = time.Duration(vals[3])
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
