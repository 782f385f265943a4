package usage

import (
	"bytes"
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

// A record with its GPU type reads back whole; one written before the
// type existed reads with none, and what such an older scaler reads of a
// record with a type (everything up to it) is the same figures: the type
// is appended, so the format stays readable both ways.
func TestGPUTypeRecord(t *testing.T) {
	f := Figures{Kind: "model", Org: "acme", GPUs: 2, GPUType: "a100", Tracked: time.Hour, GPUTime: 2 * time.Hour, Wakes: [causeCount]int64{1}}
	got, err := unmarshal(f.marshal())
	if err != nil || got != f {
		t.Fatalf("with a GPU type: %+v, %v; want %+v", got, err, f)
	}
	untyped := f
	untyped.GPUType = ""
	b := untyped.marshal()
	if old, err := unmarshal(b); err != nil || old != untyped {
		t.Fatalf("without a GPU type: %+v, %v", old, err)
	}
	if !bytes.HasPrefix(f.marshal(), b) {
		t.Fatal("the typed record does not begin with the untyped one: an older scaler would misread it")
	}
}
