package usage

import (
	"encoding/binary"
	"testing"
	"time"
)

// A version 1 record (four causes) still reads, its wakes where they were.
func TestVersion1RecordReads(t *testing.T) {
	b := []byte{1}
	b = appendString(appendString(b, "model"), "acme")
	for _, v := range []uint64{4, 3600_000, 1800_000, 1800_000, 3600_000, 7200_000, 14400_000, 2, 1, 0, 0} {
		b = binary.AppendUvarint(b, v)
	}
	f, err := unmarshal(b)
	if err != nil || f.Active != 30*time.Minute || f.Wakes[CauseActivity] != 2 || f.Wakes[CauseHint] != 1 || f.Wakes[CausePrewarm] != 0 {
		t.Fatalf("version 1: %+v %v", f, err)
	}
	f.Wakes[CausePrewarm] = 5
	if back, err := unmarshal(f.marshal()); err != nil || back != f {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}
