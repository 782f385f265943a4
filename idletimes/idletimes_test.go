package idletimes

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/orgscaler/orgscaler/keepalive"
)

func open(t *testing.T, dir, replica string) (*Store, *badger.DB) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{DB: db, Replica: replica})
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

// Idle times survive a restart; those shorter than MinIdle are not kept;
// the fleet learns an org's first idle times only.
func TestObserveSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, db := open(t, dir, "r0")
	for _, idle := range []time.Duration{time.Minute, 40 * time.Minute, 40*time.Minute + 30*time.Second, 5 * time.Hour} {
		if err := s.Observe("acme", idle); err != nil {
			t.Fatal(err)
		}
	}
	for range 30 {
		if err := s.Observe("busy", 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, db = open(t, dir, "r0")
	defer db.Close()
	h, fleet, err := s.History("acme")
	if err != nil {
		t.Fatal(err)
	}
	if h.Bins[40] != 2 || h.Over != 1 || h.Known() != 3 {
		t.Fatalf("acme after a restart: bin 40 = %d, over %d, known %d; want 2 idle times of 40 m and one beyond the range", h.Bins[40], h.Over, h.Known())
	}
	// The fleet counts an org's idle times while it has at most 16.
	if fleet.Bins[3] != 16 || fleet.Bins[40] != 2 || fleet.Known() != 19 {
		t.Fatalf("fleet: bin 3 = %d, bin 40 = %d, known %d; want busy's first 16 and acme's 3", fleet.Bins[3], fleet.Bins[40], fleet.Known())
	}
}

// Replicas' counts merge by the larger per bin: applying them in any
// order, twice, gives the sum over replicas, and a replica's own count
// keeps growing on top.
func TestMergeIsIdempotentAndSums(t *testing.T) {
	a, adb := open(t, t.TempDir(), "a")
	defer adb.Close()
	var sent []Counts
	b, bdb := open(t, t.TempDir(), "b")
	defer bdb.Close()
	b.opts.OnChange = func(c Counts) { sent = append(sent, c) }
	var updated []string
	a.opts.OnUpdate = func(org string) { updated = append(updated, org) }
	if _, _, err := a.History("acme"); err != nil { // cached on a
		t.Fatal(err)
	}
	for range 3 {
		if err := b.Observe("acme", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Observe("acme", 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	for i := len(sent) - 1; i >= 0; i-- { // newest first, then all again
		if err := a.Merge(sent[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range sent {
		if err := a.Merge(c); err != nil {
			t.Fatal(err)
		}
	}
	h, fleet, err := a.History("acme")
	if err != nil {
		t.Fatal(err)
	}
	if h.Bins[10] != 4 || fleet.Bins[10] != 4 {
		t.Fatalf("acme on a: bin 10 = %d, fleet %d; want 1 of a's and 3 of b's", h.Bins[10], fleet.Bins[10])
	}
	a.mu.Lock()
	delete(a.cached, "acme") // read back from disk: the same sum
	a.mu.Unlock()
	if h, _, _ := a.History("acme"); h.Bins[10] != 4 {
		t.Fatalf("acme from disk: bin 10 = %d; want 4", h.Bins[10])
	}
	if len(updated) < 2 || updated[0] != "acme" {
		t.Fatalf("updates told: %v; want acme for its own idle time and b's", updated)
	}
	var exported []Counts
	err = a.Export(func(cs []Counts) error { exported = append(exported, cs...); return nil })
	if err != nil || len(exported) != 4 {
		t.Fatalf("export: %d counts, %v; want a's and b's for acme and the fleet", len(exported), err)
	}
	if err := a.Delete("acme"); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := a.History("acme"); h.Known() != 0 {
		t.Fatalf("acme after delete knows %d idle times; want none", h.Known())
	}
}

func FuzzUnmarshal(f *testing.F) {
	var h keepalive.History
	h.Bins[0], h.Bins[7], h.Bins[240], h.Over = 1, 9, ^uint32(0), 3
	f.Add(marshal(&h))
	f.Add([]byte{1, 0, 241, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got keepalive.History
		if err := unmarshal(b, &got); err != nil {
			return
		}
		var again keepalive.History
		if err := unmarshal(marshal(&got), &again); err != nil || again != got {
			t.Fatalf("round trip of %x: %v", b, err)
		}
	})
}

// A plan is made once per histogram: again after the org's idle times
// change, or the fleet's, never in between.
func TestPlanMadeOncePerChange(t *testing.T) {
	s, db := open(t, t.TempDir(), "r0")
	defer db.Close()
	made := 0
	plan := func() {
		t.Helper()
		if _, err := s.Plan("acme", "learned/3m", func(own, fleet *keepalive.History) keepalive.Plan {
			made++
			return keepalive.Plan{KeepFor: time.Duration(own.Known())}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.History("acme"); err != nil { // in memory: Plan reads no disk
		t.Fatal(err)
	}
	plan()
	plan()
	if made != 1 {
		t.Fatalf("made %d plans of an unchanged histogram; want 1", made)
	}
	if err := s.Observe("acme", 10*time.Minute); err != nil { // the org's, and the fleet's (young)
		t.Fatal(err)
	}
	plan()
	if err := s.Observe("other", 10*time.Minute); err != nil { // the fleet's only
		t.Fatal(err)
	}
	plan()
	plan()
	if made != 3 {
		t.Fatalf("made %d plans; want 3: at first, after acme's idle time, after the fleet's", made)
	}
}

// A keep-alive answer never waits on the disk: with a write holding the
// store (its disk check blocked), the plan of an org not in memory comes
// at once, as a new org's (from the fleet's prior alone); the org is read
// in the background, and its watchers are told when it is.
func TestPlanNeverWaitsOnTheDisk(t *testing.T) {
	dir := t.TempDir()
	s, db := open(t, dir, "r0")
	if err := s.Observe("known", 20*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	read := make(chan string, 4)
	s, err = Open(Options{DB: db, Replica: "r0", OnUpdate: func(org string) { read <- org },
		CheckDisk: func() error {
			if hold.Load() {
				close(held)
				<-release
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	go func() { _ = s.Observe("busy", 10*time.Minute) }()
	<-held // a write holds the store
	answered := make(chan uint64, 1)
	go func() {
		_, _ = s.Plan("known", "learned/3m", func(own, fleet *keepalive.History) keepalive.Plan {
			answered <- own.Known()
			return keepalive.Plan{}
		})
	}()
	select {
	case n := <-answered:
		if n != 0 {
			t.Fatalf("the plan made while the org is read used %d idle times; want none (a new org's)", n)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("a keep-alive plan waited for a write holding the store")
	}
	hold.Store(false)
	close(release)
	if org := <-read; org != "known" && org != "busy" {
		t.Fatalf("told of %q", org)
	}
	own, _, err := s.History("known")
	if err != nil || own.Known() != 1 {
		t.Fatalf("known's idle times once read: %d, %v; want 1", own.Known(), err)
	}
}
