package history

import (
	"encoding/binary"
	"errors"
)

// Encode writes b's active minutes as runs: for each, the minutes since
// the end of the previous run (or midnight) and its length, as uvarints.
// Most orgs are active in a few stretches a day, so a day is a few bytes
// on disk and on the wire, not 180.
func Encode(b *Bits) []byte {
	var out []byte
	end := 0
	for m := 0; m < Minutes; {
		if !b.Has(m) {
			m++
			continue
		}
		start := m
		for m < Minutes && b.Has(m) {
			m++
		}
		out = binary.AppendUvarint(out, uint64(start-end))
		out = binary.AppendUvarint(out, uint64(m-start))
		end = m
	}
	return out
}

var errCorrupt = errors.New("corrupt activity day")

// Decode reads what Encode wrote into b (OR-ing into what b holds).
func Decode(v []byte, b *Bits) error {
	m := 0
	for len(v) > 0 {
		gap, n := binary.Uvarint(v)
		if n <= 0 || gap > Minutes {
			return errCorrupt
		}
		v = v[n:]
		run, n := binary.Uvarint(v)
		if n <= 0 || run == 0 || run > Minutes || m+int(gap)+int(run) > Minutes {
			return errCorrupt
		}
		v = v[n:]
		m += int(gap)
		for i := range int(run) {
			b.Set(m + i)
		}
		m += int(run)
	}
	return nil
}
