package pools

import (
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func open(t *testing.T, dir, replica string, now func() time.Time) (*Store, *badger.DB) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{DB: db, Replica: replica, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func ptr[T any](v T) *T { return &v }

// A pool is created with its GPUs, changed field by field, kept across a
// restart, and deleted; bad settings are refused by name.
func TestSetGetDelete(t *testing.T) {
	dir := t.TempDir()
	s, db := open(t, dir, "r1", nil)
	if _, err := s.Set("a100", Update{WakeCount: ptr(2), WakePer: 30 * time.Second}); !isField(err, "gpus") {
		t.Fatalf("a new pool without gpus: %v; want a gpus error", err)
	}
	if _, err := s.Set("A100", Update{GPUs: ptr[int64](8)}); !isField(err, "pool") {
		t.Fatalf("an upper-case name: %v; want a pool name error", err)
	}
	p, err := s.Set("a100", Update{GPUs: ptr[int64](8)})
	if err != nil || p.GPUs != 8 || p.Stabilization != DefaultStabilization || p.WakeRate() != "" {
		t.Fatalf("created %+v, %v; want 8 GPUs, 60s, no pacing", p, err)
	}
	if p, err = s.Set("a100", Update{WakeCount: ptr(2), WakePer: 30 * time.Second}); err != nil || p.GPUs != 8 || p.WakeRate() != "2/30s" {
		t.Fatalf("changed %+v, %v; want 8 GPUs at 2/30s", p, err)
	}
	for _, u := range []Update{{GPUs: ptr[int64](-1)}, {WakeCount: ptr(2)}, {Stabilization: ptr(2 * time.Hour)}} {
		if _, err := s.Set("a100", u); !isField(err, "") {
			t.Fatalf("%+v: %v; want a field error", u, err)
		}
	}
	_ = db.Close()
	s, db = open(t, dir, "r1", nil)
	defer db.Close()
	if p, ok := s.Get("a100"); !ok || p.WakeRate() != "2/30s" || p.GPUs != 8 {
		t.Fatalf("after a restart: %+v, %v", p, ok)
	}
	if _, err := s.Delete("a100"); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := s.Delete("a100"); !errors.As(err, &nf) {
		t.Fatalf("deleted twice: %v; want not found", err)
	}
	if _, ok := s.Get("a100"); ok || len(s.List()) != 0 {
		t.Fatal("a deleted pool is still listed")
	}
}

func isField(err error, field string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && (field == "" || fe.Field == field)
}

// Two replicas that exchange what they wrote, in any order, keep the
// same pools: the later write wins, and a delete is not undone by an
// older set arriving after it.
func TestMergeLastWriterWins(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	clock := t0
	now := func() time.Time { return clock }
	a, dba := open(t, t.TempDir(), "a", now)
	defer dba.Close()
	b, dbb := open(t, t.TempDir(), "b", now)
	defer dbb.Close()
	var fromA, fromB []Pool
	a.o.OnChange = func(p Pool) { fromA = append(fromA, p) }
	b.o.OnChange = func(p Pool) { fromB = append(fromB, p) }
	must(t)(a.Set("l4", Update{GPUs: ptr[int64](4)}))
	clock = clock.Add(time.Second)
	must(t)(b.Set("l4", Update{GPUs: ptr[int64](6)}))
	clock = clock.Add(time.Second)
	must(t)(a.Delete("l4"))
	if err := b.Merge(fromA); err != nil { // the set, then the delete
		t.Fatal(err)
	}
	if err := a.Merge(fromB); err != nil { // the older set, after the delete
		t.Fatal(err)
	}
	if _, ok := a.Get("l4"); ok {
		t.Fatal("an older set revived a deleted pool")
	}
	if _, ok := b.Get("l4"); ok {
		t.Fatal("the delete did not reach b")
	}
	sa, oka := a.Digest()
	sb, okb := b.Digest()
	if sa != sb || oka || okb {
		t.Fatalf("digests differ, or count a deleted pool: %x %v / %x %v", sa, oka, sb, okb)
	}
	must(t)(b.Set("l4", Update{GPUs: ptr[int64](2)}))
	if err := a.Merge(fromB[1:]); err != nil {
		t.Fatal(err)
	}
	if p, ok := a.Get("l4"); !ok || p.GPUs != 2 {
		t.Fatalf("a later set after the delete: %+v, %v; want 2 GPUs", p, ok)
	}
}

func must(t *testing.T) func(Pool, error) {
	return func(_ Pool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The pools a caller may create are bounded.
func TestLimit(t *testing.T) {
	s, db := open(t, t.TempDir(), "r", nil)
	defer db.Close()
	for i := range MaxPools {
		must(t)(s.Set(poolName(i), Update{GPUs: ptr[int64](1)}))
	}
	var le *LimitError
	if _, err := s.Set("one-more", Update{GPUs: ptr[int64](1)}); !errors.As(err, &le) {
		t.Fatalf("past the limit: %v; want a LimitError", err)
	}
	must(t)(s.Set(poolName(0), Update{GPUs: ptr[int64](2)})) // changing one still works
}

func poolName(i int) string { return "p" + string(rune('a'+i%26)) + string(rune('a'+i/26)) }
