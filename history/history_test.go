package history

import (
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func openDB(t *testing.T) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var day = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func read(t *testing.T, s *Store, d time.Time) map[string]Bits {
	t.Helper()
	out := map[string]Bits{}
	if err := s.Read(d, func(x Day) error { out[x.Org] = x.Bits; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Marks land in their org's day at Flush, by UTC minute; a failed write
// keeps them for the next; OnChange hears each day that gained minutes.
func TestMarkAndFlush(t *testing.T) {
	var sent []Day
	full := errors.New("disk full")
	var diskErr error
	s := Open(Options{DB: openDB(t), Now: func() time.Time { return day.Add(36 * time.Hour) },
		OnChange: func(d Day) { sent = append(sent, d) }, CheckDisk: func() error { return diskErr }})
	s.Mark("acme", day.Add(90*time.Second))
	s.Mark("acme", day.Add(100*time.Second)) // the same minute
	s.Mark("acme", day.Add(23*time.Hour+59*time.Minute))
	s.Mark("beta", day.Add(25*time.Hour)) // the next day
	diskErr = full
	if err := s.Flush(0, nil); !errors.Is(err, full) {
		t.Fatalf("flush on a full disk: %v", err)
	}
	diskErr = nil
	if err := s.Flush(0, nil); err != nil {
		t.Fatal(err)
	}
	got := read(t, s, day.Add(5*time.Hour))
	a := got["acme"]
	if len(got) != 1 || !a.Has(1) || !a.Has(1439) || a.Has(0) || a.Has(2) {
		t.Fatalf("day 1: %v; want acme in minutes 1 and 1439", got)
	}
	if b := read(t, s, day.Add(24*time.Hour))["beta"]; !b.Has(60) {
		t.Fatal("beta's minute of the next day is missing")
	}
	if len(sent) != 2 {
		t.Fatalf("told of %d days; want acme's and beta's", len(sent))
	}
	if err := s.Flush(0, nil); err != nil || len(sent) != 2 {
		t.Fatalf("an empty flush told of days: %d %v", len(sent), err)
	}
}

// Days merge by OR: in any order, twice, and a delete takes an org's days.
func TestMergeAndDelete(t *testing.T) {
	now := func() time.Time { return day.Add(12 * time.Hour) }
	s := Open(Options{DB: openDB(t), Now: now})
	var x, y Bits
	x.Set(5)
	y.Set(7)
	for _, days := range [][]Day{{{Org: "acme", Day: day, Bits: y}}, {{Org: "acme", Day: day, Bits: x}}, {{Org: "acme", Day: day, Bits: y}}} {
		if err := s.Merge(days); err != nil {
			t.Fatal(err)
		}
	}
	if a := read(t, s, day)["acme"]; !a.Has(5) || !a.Has(7) || a.Has(6) {
		t.Fatalf("merged: %v; want minutes 5 and 7", a)
	}
	var exported []Day
	if err := s.Export(func(ds []Day) error { exported = append(exported, ds...); return nil }); err != nil || len(exported) != 1 || !exported[0].Day.Equal(day) {
		t.Fatalf("export: %v %v", exported, err)
	}
	if err := s.Delete("acme"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, day); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	s.opts.Holds = func(string) bool { return false }
	if err := s.Merge([]Day{{Org: "gone", Day: day, Bits: x}}); err != nil || len(read(t, s, day)) != 0 {
		t.Fatal("a day of an org no longer held was kept")
	}
}

// Days are stored as runs of minutes: a few bytes for most orgs, read
// back whole; marks not yet flushed are read too.
func TestEncodeAndReadPending(t *testing.T) {
	var b Bits
	for _, m := range []int{0, 1, 2, 600, 1439} {
		b.Set(m)
	}
	enc := Encode(&b)
	var back Bits
	if err := Decode(enc, &back); err != nil || back != b || len(enc) > 8 {
		t.Fatalf("encoded in %d bytes, back %v: %v", len(enc), back == b, err)
	}
	if err := Decode([]byte{0, 0}, &back); err == nil {
		t.Fatal("a run of no minutes read")
	}
	s := Open(Options{DB: openDB(t)})
	s.Mark("acme", day.Add(3*time.Minute))
	if a := read(t, s, day)["acme"]; !a.Has(3) {
		t.Fatal("a mark not yet flushed is missing from Read")
	}
}

func FuzzDecode(f *testing.F) {
	var b Bits
	b.Set(5)
	b.Set(1439)
	f.Add(Encode(&b))
	f.Fuzz(func(t *testing.T, v []byte) {
		var got Bits
		if Decode(v, &got) != nil {
			return
		}
		var again Bits
		if err := Decode(Encode(&got), &again); err != nil || again != got {
			t.Fatalf("%x: round trip: %v", v, err)
		}
	})
}
