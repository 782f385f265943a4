package activity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// An import creates orgs as the export had them: one whose last activity
// is older than its window, or that has none, arrives dormant, so KEDA's
// first look at its triggers finds it at zero; one used within its window
// is active until the window ends. Settings come with them; a dry run
// changes nothing; importing again changes nothing; every change goes to
// the other replicas.
func TestImportArrivesAsExported(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	now := time.Now()
	var mu sync.Mutex
	var sent []Change
	opts.OnChange = func(c Change) { mu.Lock(); sent = append(sent, c); mu.Unlock() }
	s := mustOpen(t, opts)
	defer s.Close()
	off, hour := false, time.Hour
	rows := func() []Imported {
		return []Imported{
			{Org: "months-ago", LastActivity: now.Add(-90 * 24 * time.Hour)},
			{Org: "never"},
			{Org: "this-morning", LastActivity: now.Add(-3 * time.Hour)},
			{Org: "important", LastActivity: now.Add(-90 * 24 * time.Hour), Update: Update{ScaleToZeroAllowed: &off}},
			{Org: "short", LastActivity: now.Add(-3 * time.Hour), Update: Update{IdleWindow: &hour}},
		}
	}
	dry, err := s.Import(rows(), true)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Created != 5 || dry.Dormant != 3 || len(dry.Changes) != 5 || s.Len() != 0 || len(sent) != 0 {
		t.Fatalf("dry run: %+v, %d orgs held, %d sent; want 5 created, 3 dormant, nothing held or sent", dry, s.Len(), len(sent))
	}
	res, err := s.Import(rows(), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 5 || res.Dormant != 3 {
		t.Fatalf("import: %+v; want 5 created, 3 dormant", res)
	}
	for org, dormant := range map[string]bool{"months-ago": true, "never": true, "this-morning": false, "important": false, "short": true} {
		o, err := s.Sight(org) // KEDA's first look
		if err != nil || o.Dormant() != dormant {
			t.Errorf("%s: dormant %v (%v); want %v: %+v", org, o.Dormant(), err, dormant, o)
		}
	}
	if o, _ := s.Get("months-ago"); !o.LastActivity.Equal(now.Add(-90 * 24 * time.Hour)) {
		t.Errorf("months-ago's last activity %s; want the export's", o.LastActivity)
	}
	mu.Lock()
	if len(sent) != 5 {
		t.Errorf("%d changes sent to the other replicas; want 5", len(sent))
	}
	mu.Unlock()
	again, err := s.Import(rows(), false)
	if err != nil || again.Unchanged != 5 || len(again.Changes) != 0 {
		t.Fatalf("importing again: %+v, %v; want 5 unchanged", again, err)
	}
	// Newer activity here is never moved back by an older export.
	s.Record("months-ago")
	back, err := s.Import(rows()[:1], false)
	if o, _ := s.Get("months-ago"); err != nil || back.Unchanged != 1 || o.Dormant() {
		t.Fatalf("an older export after activity here: %+v, %v, %+v; want it unchanged and active", back, err, o)
	}
}

// A bad row is refused naming its index and field, and nothing of the
// import is applied.
func TestImportRefusesABadRowWhole(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	defer s.Close()
	bad := "Mon-Fri 25:00-26:00 Europe/Berlin"
	_, err := s.Import([]Imported{{Org: "fine"}, {Org: "broken", Update: Update{WarmSchedule: &bad}}}, false)
	var ie *ImportError
	if !errors.As(err, &ie) || ie.Row != 1 || ie.Field != "warm_schedule" {
		t.Fatalf("err %v; want an ImportError for row 1, warm_schedule", err)
	}
	future := time.Now().Add(time.Hour)
	if _, err := s.Import([]Imported{{Org: "fine"}, {Org: "later", LastActivity: future}}, false); !errors.As(err, &ie) || ie.Row != 1 ||
		ie.Field != "last_activity_at" || !strings.Contains(err.Error(), "in the past") {
		t.Fatalf("err %v; want row 1's last_activity_at refused as in the future", err)
	}
	if s.Len() != 0 {
		t.Fatalf("%d orgs held after refused imports; want none", s.Len())
	}
}

// With UnseenDormant an org a trigger names first is at zero until its
// first activity, on this replica and on every replica its creation
// reaches; an admin change made anywhere wins over its mark.
func TestUnseenOrgsDormant(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	opts.UnseenDormant = true
	var sent []Change
	opts.OnChange = func(c Change) { sent = append(sent, c) }
	s := mustOpen(t, opts)
	defer s.Close()
	o, err := s.Sight("new-from-a-trigger")
	if err != nil || !o.Dormant() {
		t.Fatalf("first sight: %+v, %v; want dormant", o, err)
	}
	w, err := s.Watch("new-from-a-stream")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if o, _ := s.Get("new-from-a-stream"); !o.Dormant() {
		t.Fatalf("first watch: %+v; want dormant", o)
	}
	peer := mustOpen(t, testOptions(t, t.TempDir())) // active by default: the change decides
	defer peer.Close()
	if err := peer.Apply(sent); err != nil {
		t.Fatal(err)
	}
	if a, b := peer.Digest(); a != s.digestOnly() || b != 2 {
		t.Fatalf("the peer holds %d orgs, digest differing=%v; want the same 2", b, a != s.digestOnly())
	}
	off := false
	if _, err := peer.Update(context.Background(), "new-from-a-trigger", Update{ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	if o, _ := peer.Get("new-from-a-trigger"); o.Dormant() || o.ScaleToZeroAllowed {
		t.Fatalf("after an admin change: %+v; want scale to zero off, active", o)
	}
	if _, woke := s.Record("new-from-a-trigger"); !woke {
		t.Fatal("the first activity did not wake it")
	}
}

func (s *Store) digestOnly() [32]byte { d, _ := s.Digest(); return d }
