package idletimes

import (
	"encoding/binary"
	"fmt"

	"github.com/orgscaler/orgscaler/keepalive"
)

// codecVersion is the first byte of every stored histogram.
const codecVersion = 1

// marshal writes h sparsely: most orgs show a few distinct idle times, so
// a histogram is a few bytes, not its thousand. The version, Over, then
// (gap to the bin from the last one, count) for each bin that counts.
func marshal(h *keepalive.History) []byte {
	b := []byte{codecVersion}
	b = binary.AppendUvarint(b, uint64(h.Over))
	last := -1
	for i, n := range h.Bins {
		if n == 0 {
			continue
		}
		b = binary.AppendUvarint(b, uint64(i-last))
		b = binary.AppendUvarint(b, uint64(n))
		last = i
	}
	return b
}

func unmarshal(b []byte, h *keepalive.History) error {
	if len(b) == 0 || b[0] != codecVersion {
		return fmt.Errorf("corrupt idle-time histogram: want version %d", codecVersion)
	}
	b = b[1:]
	over, n := binary.Uvarint(b)
	if n <= 0 || over > 1<<32-1 {
		return fmt.Errorf("corrupt idle-time histogram: bad count beyond the range")
	}
	h.Over, b = uint32(over), b[n:]
	bin := -1
	for len(b) > 0 {
		gap, n := binary.Uvarint(b)
		if n <= 0 || gap == 0 || gap > uint64(len(h.Bins)) {
			return fmt.Errorf("corrupt idle-time histogram: bad bin after %d", bin)
		}
		b = b[n:]
		count, n := binary.Uvarint(b)
		if n <= 0 || count > 1<<32-1 || bin+int(gap) >= len(h.Bins) {
			return fmt.Errorf("corrupt idle-time histogram: bad count for bin %d", bin+int(gap))
		}
		b = b[n:]
		bin += int(gap)
		h.Bins[bin] = uint32(count)
	}
	return nil
}

// add adds h's counts into sum, saturating.
func add(sum, h *keepalive.History) {
	for i, n := range h.Bins {
		sum.Bins[i] = satAdd(sum.Bins[i], n)
	}
	sum.Over = satAdd(sum.Over, h.Over)
}

// grow moves sum from holding old to holding new, one replica's counts
// that only grew.
func grow(sum, old, new *keepalive.History) {
	for i := range new.Bins {
		sum.Bins[i] = satAdd(sum.Bins[i], new.Bins[i]-old.Bins[i])
	}
	sum.Over = satAdd(sum.Over, new.Over-old.Over)
}

func satAdd(a, b uint32) uint32 {
	if a > ^uint32(0)-b {
		return ^uint32(0)
	}
	return a + b
}
