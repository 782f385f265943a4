package activity

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/hlc"
)

// changesOf makes a history of changes from three replicas: activity,
// settings and deletes of a few orgs, over an hour.
func changesOf(seed uint64) []Change {
	r := rand.New(rand.NewPCG(seed, seed))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var clocks []*hlc.Clock
	var walls []time.Time
	for i := range 3 {
		i := i
		walls = append(walls, t0)
		clocks = append(clocks, hlc.New(fmt.Sprintf("scaler-%d", i), func() time.Time { return walls[i] }))
	}
	var out []Change
	for range 300 {
		i := r.IntN(3)
		walls[i] = walls[i].Add(time.Duration(r.IntN(20)) * time.Second)
		org := fmt.Sprintf("org-%d", r.IntN(8))
		switch k := r.IntN(10); {
		case k < 6:
			out = append(out, Change{Org: org, Activity: walls[i].Add(time.Duration(r.IntN(1000)) * time.Microsecond)})
		case k < 9:
			c := Change{Org: org}
			at := clocks[i].Now()
			switch r.IntN(3) {
			case 0:
				v := r.IntN(2) == 0
				c.ScaleToZero, c.ScaleToZeroAt = &v, at
			case 1:
				w := 1 + r.Int64N(3)
				c.PoolWeight, c.PoolWeightAt = &w, at
			default:
				w := time.Duration(1+r.IntN(3)) * time.Hour
				c.IdleWindow, c.IdleWindowAt = &w, at
			}
			if r.IntN(3) == 0 {
				c.Activity = walls[i]
			}
			out = append(out, c)
		default:
			out = append(out, Change{Org: org, Deleted: clocks[i].Now()})
		}
	}
	return out
}

// Replicas that apply the same changes, in any order and any number of
// times, hold the same state: equal digests.
func TestApplyIsCommutativeAndIdempotent(t *testing.T) {
	for seed := range uint64(5) {
		changes := changesOf(seed)
		var want [32]byte
		var wantN int
		for replica := range 3 {
			o := testOptions(t, t.TempDir())
			o.Now = func() time.Time { return time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC) }
			s := mustOpen(t, o)
			order := append([]Change(nil), changes...)
			r := rand.New(rand.NewPCG(seed, uint64(replica)+100))
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			order = append(order, order[:len(order)/3]...) // redelivered
			if err := s.Apply(order); err != nil {
				t.Fatal(err)
			}
			sum, n := s.Digest()
			if replica == 0 {
				want, wantN = sum, n
			} else if sum != want || n != wantN {
				t.Fatalf("seed %d: replica %d has digest %x over %d orgs, replica 0 %x over %d", seed, replica, sum[:6], n, want[:6], wantN)
			}
			// The same after a restart: the merged state is what is on disk.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, o)
			if sum, n := s.Digest(); sum != want || n != wantN {
				t.Fatalf("seed %d: replica %d changed across a restart", seed, replica)
			}
			_ = s.Close()
		}
		if wantN == 0 {
			t.Fatalf("seed %d: every org deleted: the history tests too little", seed)
		}
	}
}

// A delete takes away what came before it, and only that: late activity
// from before the delete is ignored, activity after it brings the org back
// as new.
func TestDeleteIsATombstone(t *testing.T) {
	o := testOptions(t, t.TempDir())
	s := mustOpen(t, o)
	t.Cleanup(func() { _ = s.Close() })
	s.Record("acme")
	// The org's own last activity: the delete's stamp is later whatever
	// its clock (a time.Now taken here could fall within the stamp's
	// last microsecond, where its replica bits are).
	recorded, _ := s.Get("acme")
	before := recorded.LastActivity
	if _, _, ok, err := s.Delete(t.Context(), "acme"); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.Apply([]Change{{Org: "acme", Activity: before}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("acme"); ok {
		t.Fatal("activity from before the delete, delivered late, brought the org back")
	}
	after := time.Now().Add(time.Second)
	if err := s.Apply([]Change{{Org: "acme", Activity: after}}); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Get("acme")
	if !ok || !got.LastActivity.Equal(after.UTC()) || !got.ScaleToZeroAllowed {
		t.Fatalf("activity after the delete: want the org back as new, got %+v %v", got, ok)
	}
	// The tombstone survives a restart.
	_ = s.Close()
	s = mustOpen(t, o)
	if err := s.Apply([]Change{{Org: "acme", Activity: before}, {Org: "other", Activity: before}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get("acme"); !got.LastActivity.Equal(after.UTC()) {
		t.Fatalf("after a restart: %+v", got)
	}
}

// A data dir written before settings had stamps (record version 1) reads
// as settings written at the earliest instant: replicated, and beaten by
// any later write.
func TestRecordVersion1Reads(t *testing.T) {
	v1 := []byte{1, flagScaleToZeroOff}
	for _, v := range []int64{100, 50, 0, int64(time.Hour)} {
		v1 = binary.AppendVarint(v1, v)
	}
	r, err := unmarshalRecord(v1)
	if err != nil {
		t.Fatal(err)
	}
	if r.LastActivity != 100 || r.FirstSeen != 50 || r.ScaleToZero || r.IdleWindow != time.Hour || r.ScaleToZeroAt != 1 || r.IdleWindowAt != 1 {
		t.Fatalf("version 1 record: %+v", r)
	}
	back, err := unmarshalRecord(r.marshal())
	if err != nil || back != r {
		t.Fatalf("version 2 round trip: %+v %v", back, err)
	}
}

// A replica applying what it already holds writes nothing: a redelivered
// message, or a peer's whole snapshot applied to an equal replica
// (anti-entropy between identical replicas), costs no disk write.
func TestApplyWritesOnlyWhatChanges(t *testing.T) {
	o := testOptions(t, t.TempDir())
	s := mustOpen(t, o)
	changes := changesOf(7)
	if err := s.Apply(changes); err != nil {
		t.Fatal(err)
	}
	// Closed and opened again, so nothing the first Apply set going in the
	// background (transitions written at once) can land in what is counted.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	s = mustOpen(t, o)
	defer s.Close()
	writes := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "orgscaler_badger_org_writes_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no orgscaler_badger_org_writes_total")
		return 0
	}
	if err := s.flush(false); err != nil { // what the load itself changed
		t.Fatal(err)
	}
	before := writes()
	if err := s.Apply(changes); err != nil {
		t.Fatal(err)
	}
	if err := s.Export(func(cs []Change) error { return s.Apply(cs) }); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(false); err != nil {
		t.Fatal(err)
	}
	if after := writes(); after != before {
		t.Fatalf("applying what the store holds wrote %v org records; want none", after-before)
	}
	if err := s.Apply([]Change{{Org: "brand-new", Activity: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if writes() != before+1 {
		t.Fatalf("applying a new org wrote %v org records; want 1", writes()-before)
	}
}
