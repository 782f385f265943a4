package activity

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/internal/clocktest"
)

// An admin change waits for its fsync with no lock that KEDA's answers
// take: the org is read, and used, while the change is still being synced.
func TestUpdateSyncsWithoutBlockingAnswers(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	s := mustOpen(t, opts)
	s.Record("acme")
	if err := s.Close(); err != nil { // nothing left for the urgent flusher
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	defer s.Close()
	inSync, release := make(chan struct{}), make(chan struct{})
	hook := func() {
		select {
		case inSync <- struct{}{}:
			<-release
		default:
		}
	}
	s.syncHook.Store(&hook)
	off := false
	updated := make(chan Org)
	go func() {
		o, err := s.Update(context.Background(), "acme", Update{ScaleToZeroAllowed: &off})
		if err != nil {
			t.Error(err)
		}
		updated <- o
	}()
	<-inSync // the change is written and being synced
	answered := make(chan Org)
	go func() {
		s.Record("acme") // a producer's activity during the sync
		o, _ := s.Sight("acme")
		answered <- o
	}()
	select {
	case o := <-answered:
		if !o.ScaleToZeroAllowed {
			t.Fatal("the change is in force before it is on disk")
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("reading the org waited for the admin change's fsync")
	}
	close(release)
	o := <-updated
	if o.ScaleToZeroAllowed {
		t.Fatalf("the change is not in force after the call: %+v", o)
	}
	if got, _ := s.Get("acme"); got.ScaleToZeroAllowed {
		t.Fatalf("the change was lost: %+v", got)
	}
}

// A transition that a full flush writes (the urgent flush was busy) is
// synced too, as an urgent flush would have.
func TestFullFlushSyncsTransitions(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	defer s.Close()
	syncs := make(chan struct{}, 10)
	release := make(chan struct{})
	var calls atomic.Int32
	hook := func() {
		syncs <- struct{}{}
		if calls.Add(1) == 1 { // the urgent flusher is held in its first sync
			<-release
		}
	}
	s.syncHook.Store(&hook)
	defer close(release)
	_, _ = s.Sight("first")
	<-syncs
	_, _ = s.Sight("second") // new: urgent, but the urgent flusher is busy
	if err := s.flush(false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-syncs:
	default:
		t.Fatal("a full flush wrote a new org without syncing it")
	}
}

// A setting written while the clock was an hour ahead can still be
// changed after a restart with the clock right: the store observes its
// records' stamps as it loads them.
func TestSettingsChangeAfterARestartWithTheClockBack(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	clock := clocktest.New(time.Now().Add(time.Hour))
	opts.Now = clock.Now
	s := mustOpen(t, opts)
	off := false
	if _, err := s.Update(context.Background(), "acme", Update{ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Set(time.Now())
	s = mustOpen(t, opts)
	defer s.Close()
	on := true
	o, err := s.Update(context.Background(), "acme", Update{ScaleToZeroAllowed: &on})
	if err != nil || !o.ScaleToZeroAllowed {
		t.Fatalf("after a restart with the clock an hour back, UpdateOrg answered %+v, %v; want scale-to-zero allowed again", o, err)
	}
}

// A delete removes the org whatever the stamps it saw: activity another
// replica stamped 10 minutes ahead does not outlive it, nor does the
// change come back.
func TestDeleteBeatsActivityFromAFastClock(t *testing.T) {
	opts := testOptions(t, t.TempDir())
	s := mustOpen(t, opts)
	defer s.Close()
	ahead := time.Now().Add(10 * time.Minute)
	if err := s.Apply([]Change{{Org: "acme", Activity: ahead}}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := s.Delete(context.Background(), "acme"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if err := s.Apply([]Change{{Org: "acme", Activity: ahead}}); err != nil { // redelivered
		t.Fatal(err)
	}
	if o, ok := s.Get("acme"); ok {
		t.Fatalf("acme, deleted after activity stamped 10m ahead, is back: %+v", o)
	}
}
