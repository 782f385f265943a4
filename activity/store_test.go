package activity

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/internal/clocktest"
)

func testOptions(t *testing.T, dir string) Options {
	t.Helper()
	return Options{
		Dir:           dir,
		IdleWindow:    24 * time.Hour,
		FlushInterval: 10 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mustOpen(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// fakeClock is the store's clock in these tests: time moves only when the
// test says, and advance fires every deadline that came due, as the
// scheduler's timer would have.
type fakeClock struct {
	*clocktest.Clock
	s *Store
}

func (c *fakeClock) advance(d time.Duration) {
	c.Advance(d)
	c.s.sched.fireDue()
}

// withClock runs f with a store over a real Badger in dir and a clock under
// the test's control. restart closes the store and opens it again, as a
// restarted scaler would.
func withClock(t *testing.T, dir string, f func(t *testing.T, c *fakeClock, restart func(down time.Duration))) {
	t.Helper()
	c := &fakeClock{Clock: clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	o := testOptions(t, dir)
	o.Now = c.Now
	c.s = mustOpen(t, o)
	restart := func(down time.Duration) {
		t.Helper()
		if err := c.s.Close(); err != nil {
			t.Fatal(err)
		}
		c.Advance(down)
		c.s = mustOpen(t, o)
	}
	f(t, c, restart)
	if err := c.s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDormantAtExactInstant(t *testing.T) {
	withClock(t, t.TempDir(), func(t *testing.T, c *fakeClock, _ func(time.Duration)) {
		s := c.s
		start := c.Now()
		s.Record("acme")
		w, _ := s.Watch("acme")
		defer w.Stop()

		c.advance(24*time.Hour - time.Nanosecond)
		if o, _ := s.Get("acme"); o.Dormant() {
			t.Fatalf("dormant 1ns before its window ran out: %+v", o)
		}
		c.advance(time.Nanosecond)
		o, _ := s.Get("acme")
		if !o.Dormant() || !o.DormantSince.Equal(start.Add(24*time.Hour)) {
			t.Fatalf("want dormant since %v, got %+v", start.Add(24*time.Hour), o)
		}
		select {
		case <-w.C():
		default:
			t.Fatal("watcher not told of the transition")
		}
	})
}

func TestActivityPostponesDormancy(t *testing.T) {
	withClock(t, t.TempDir(), func(t *testing.T, c *fakeClock, _ func(time.Duration)) {
		s := c.s
		s.Record("acme")
		c.advance(20 * time.Hour)
		s.Record("acme")
		c.advance(10 * time.Hour) // past the first deadline, within the second
		if o, _ := s.Get("acme"); o.Dormant() {
			t.Fatalf("dormant 10h after its last activity with a 24h window: %+v", o)
		}
		c.advance(14 * time.Hour)
		if o, _ := s.Get("acme"); !o.Dormant() {
			t.Fatalf("not dormant 24h after its last activity: %+v", o)
		}
		o, woke := s.Record("acme")
		if !woke || o.Dormant() {
			t.Fatalf("activity did not wake the dormant org: woke=%v %+v", woke, o)
		}
	})
}

func TestScaleToZeroOffNeverDormant(t *testing.T) {
	withClock(t, t.TempDir(), func(t *testing.T, c *fakeClock, _ func(time.Duration)) {
		s := c.s
		off := false
		if _, err := s.Update(context.Background(), "vip", Update{ScaleToZeroAllowed: &off}); err != nil {
			t.Fatal(err)
		}
		c.advance(72 * time.Hour)
		if o, _ := s.Get("vip"); o.Dormant() || !o.DormantAt(c.Now()).IsZero() {
			t.Fatalf("org with scale to zero off went dormant: %+v", o)
		}
		on := true
		o, err := s.Update(context.Background(), "vip", Update{ScaleToZeroAllowed: &on})
		if err != nil {
			t.Fatal(err)
		}
		if !o.Dormant() {
			t.Fatalf("idle 72h with scale to zero back on, want dormant at once: %+v", o)
		}
	})
}

func TestIdleWindowOverride(t *testing.T) {
	withClock(t, t.TempDir(), func(t *testing.T, c *fakeClock, _ func(time.Duration)) {
		s := c.s
		start := c.Now()
		s.Record("acme")
		short := 2 * time.Hour
		if _, err := s.Update(context.Background(), "acme", Update{IdleWindow: &short}); err != nil {
			t.Fatal(err)
		}
		c.advance(2 * time.Hour)
		o, _ := s.Get("acme")
		if !o.Dormant() || !o.DormantSince.Equal(start.Add(2*time.Hour)) || !o.IdleWindowOverridden {
			t.Fatalf("want dormant at 2h with its own window, got %+v", o)
		}
		// A longer window that covers the last activity again wakes it.
		long := 48 * time.Hour
		if o, _ = s.Update(context.Background(), "acme", Update{IdleWindow: &long}); o.Dormant() {
			t.Fatalf("window now covers the last activity, want active: %+v", o)
		}
	})
}

// Restart: dormant stays dormant, warm stays warm, an org whose window ran
// out while the scaler was down is dormant since the exact instant, and the
// last activity loses at most one flush interval.
func TestRestartKeepsState(t *testing.T) {
	withClock(t, t.TempDir(), func(t *testing.T, c *fakeClock, restart func(time.Duration)) {
		s := c.s
		start := c.Now()
		s.Record("sleepy")
		c.advance(10 * time.Hour)
		s.Record("soon") // its window ends while the scaler is down
		c.advance(13 * time.Hour)
		s.Record("warm")
		off := false
		if _, err := s.Update(context.Background(), "vip", Update{ScaleToZeroAllowed: &off}); err != nil {
			t.Fatal(err)
		}
		c.advance(2 * time.Hour) // sleepy's window ended at 24h
		s.Record("warm")         // only in memory until the next flush
		lastWarm := c.Now()
		restart(10 * time.Hour) // down past the end of soon's window (34h)
		s = c.s
		check := func(id string, dormant bool, since time.Time) {
			t.Helper()
			got, ok := s.Get(id)
			if !ok {
				t.Fatalf("%s lost across restart", id)
			}
			if got.Dormant() != dormant || (dormant && !got.DormantSince.Equal(since)) {
				t.Fatalf("%s after restart: want dormant=%v since %v, got %+v", id, dormant, since, got)
			}
		}
		check("sleepy", true, start.Add(24*time.Hour))
		check("soon", true, start.Add(34*time.Hour))
		check("warm", false, time.Time{})
		check("vip", false, time.Time{})
		if got, _ := s.Get("warm"); !got.LastActivity.Equal(lastWarm) {
			t.Fatalf("clean close must flush: warm last activity %v, want %v", got.LastActivity, lastWarm)
		}
		if got, _ := s.Get("vip"); got.ScaleToZeroAllowed {
			t.Fatal("admin change lost across restart")
		}
	})
}

func TestCorruptDataDirRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	s.Record("acme")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage every file Badger keeps.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := os.WriteFile(p, []byte("not a badger file"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Open(testOptions(t, dir))
	if err == nil {
		t.Fatal("opened a corrupt data dir")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("error should name the data dir %s: %v", dir, err)
	}
}

func TestCorruptRecordRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	if err := s.write([]pending{{"broken", []byte{9, 9}}}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(testOptions(t, dir))
	if err == nil || !strings.Contains(err.Error(), `org "broken"`) || !strings.Contains(err.Error(), "unknown version 9") {
		t.Fatalf("want an error naming the org and the problem, got %v", err)
	}
}

func TestUnreadableDataDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads anything; use a path that is a file instead.
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(testOptions(t, f)); err == nil || !strings.Contains(err.Error(), f) {
			t.Fatalf("want an error naming %s, got %v", f, err)
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if _, err := Open(testOptions(t, dir)); err == nil {
		t.Fatal("opened an unreadable data dir")
	}
}

func TestListPages(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	defer s.Close()
	var want []string
	for i := range 257 {
		id := fmt.Sprintf("org-%04d", i)
		want = append(want, id)
		s.Record(id)
	}
	for _, limit := range []int{1, 7, 100, 1000} {
		var got []string
		after := ""
		for {
			page, more := s.List(All, after, limit)
			if len(page) > limit {
				t.Fatalf("page of %d, limit %d", len(page), limit)
			}
			for _, o := range page {
				got = append(got, o.ID)
			}
			if !more {
				break
			}
			after = page[len(page)-1].ID
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("limit %d: pages gave %d orgs, out of order or missing", limit, len(got))
		}
	}
}
