package usage

import (
	"slices"
	"testing"
	"time"
)

// The leader's flushed hours, merged on another replica in any order and
// any number of times, give that replica the leader's report; a replica
// that joins empty gets the same from Export.
func TestMergedHoursGiveTheSameReport(t *testing.T) {
	var published [][]Hour
	leader, err := Open(openDB(t, t.TempDir()), Options{Now: func() time.Time { return t0 }, OnFlush: func(h []Hour) { published = append(published, h) }})
	if err != nil {
		t.Fatal(err)
	}
	leader.Lead("a-1")
	other, err := Open(openDB(t, t.TempDir()), Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	id := ID("default/pynode-acme", "m")
	for m := time.Duration(0); m <= 150; m += 5 {
		leader.Observe(id, pynode(m >= 60 && m < 120, CauseActivity), at(m*time.Minute))
		if m%30 == 0 {
			if err := leader.Flush(at(m * time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(published) < 3 {
		t.Fatalf("flushes published %d times, want one per flush that wrote", len(published))
	}
	// Redelivered, and the latest first.
	order := append(slices.Clone(published), published...)
	slices.Reverse(order)
	for _, batch := range order {
		if err := other.Merge(batch); err != nil {
			t.Fatal(err)
		}
	}
	_, want, err := leader.Report(t0)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := other.Report(t0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("merged report differs from the leader's:\n got %+v\nwant %+v", got, want)
	}
	if f := row(t, got, id); f.Active != time.Hour || f.Wakes[CauseActivity] != 1 {
		t.Fatalf("merged figures: active %s, wakes %d; want 1h and 1", f.Active, f.Wakes[CauseActivity])
	}

	joined, err := Open(openDB(t, t.TempDir()), Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Export(func(h []Hour) error { return joined.Merge(h) }); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := joined.Report(t0); !slices.Equal(got, want) {
		t.Fatalf("a replica loading the export reports %+v, want %+v", got, want)
	}
}

// A replica that stops leading counts its workloads' last answers up to
// then, and not the time after: the next leader counts that.
func TestPauseStopsCounting(t *testing.T) {
	l, err := Open(openDB(t, t.TempDir()), Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	id := ID("default/pynode-acme", "m")
	l.Observe(id, pynode(true, CauseActivity), at(0))
	l.Pause(at(2 * time.Minute))
	l.Observe(id, pynode(true, CauseActivity), at(7*time.Minute)) // leading again
	l.Observe(id, pynode(true, CauseActivity), at(8*time.Minute))
	_, rows, err := l.Report(t0)
	if err != nil {
		t.Fatal(err)
	}
	if f := row(t, rows, id); f.Active != 3*time.Minute {
		t.Fatalf("active %s after pausing from 2m to 7m; want 3m (0-2m, 7-8m)", f.Active)
	}
}

// A leader that takes over before the last one's hours reached it counts
// in a term of its own: every replica sums the terms, so neither leader's
// time is lost to the other's.
func TestTermsAddUp(t *testing.T) {
	var fromA, fromB []Hour
	now := func() time.Time { return t0 }
	a, err := Open(openDB(t, t.TempDir()), Options{Now: now, OnFlush: func(h []Hour) { fromA = append(fromA, h...) }})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(openDB(t, t.TempDir()), Options{Now: now, OnFlush: func(h []Hour) { fromB = append(fromB, h...) }})
	if err != nil {
		t.Fatal(err)
	}
	id := ID("default/pynode-acme", "m")
	a.Lead("a-1")
	a.Observe(id, pynode(true, CauseActivity), at(0))
	a.Observe(id, pynode(true, CauseActivity), at(10*time.Minute))
	a.Pause(at(10 * time.Minute))
	if err := a.Flush(at(10 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	// b leads before a's hours reach it.
	b.Lead("b-1")
	b.Observe(id, pynode(true, CauseActivity), at(11*time.Minute))
	b.Observe(id, pynode(true, CauseActivity), at(16*time.Minute))
	if err := b.Flush(at(16 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := b.Merge(fromA); err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(fromB); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]*Ledger{"a": a, "b": b} {
		_, rows, err := l.Report(t0)
		if err != nil {
			t.Fatal(err)
		}
		if f := row(t, rows, id); f.Active != 15*time.Minute {
			t.Errorf("%s reports %s active; want 15m: a's 10m and b's 5m", name, f.Active)
		}
	}
}
