package replication

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Only a live process that started before this one, with this replica's
// id, makes it refuse: not this process's own messages, not those of a
// predecessor that crashed before it started (redelivered later), and not
// a twin that started after it (which refuses itself).
func TestTwinDetection(t *testing.T) {
	start := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	r := &Replicator{opts: Options{Replica: "scaler-0"}, log: slog.New(slog.DiscardHandler), instance: "aaaa", started: start, now: func() time.Time { return start }}
	msg := func(instance string, started, published time.Time) *Message {
		return &Message{PublishTime: published, Attributes: map[string]string{attrInstance: instance, attrStarted: strconv.FormatInt(started.UnixNano(), 10)}}
	}
	later := start.Add(time.Minute)
	r.firstOwn.Store(start.Add(5 * time.Second).UnixNano()) // this process's first message, back
	for _, c := range []struct {
		name string
		m    *Message
		want bool
	}{
		{"this process's own", msg("aaaa", start, later), false},
		{"a predecessor's, published before this one started", msg("bbbb", start.Add(-time.Hour), start.Add(-time.Second)), false},
		{"a predecessor's, published before this process's first message", msg("bbbb", start.Add(-time.Hour), start.Add(4*time.Second)), false},
		{"a live twin that started first", msg("cccc", start.Add(-time.Hour), later), true},
		{"a live twin that started later", msg("dddd", start.Add(time.Second), later), false},
		{"a message from an older version, with no instance", &Message{PublishTime: later}, false},
	} {
		got := r.twin(c.m)
		if (got != nil) != c.want {
			t.Errorf("%s: twin %v, want refused=%v", c.name, got, c.want)
		}
		if got != nil && (!strings.Contains(got.Error(), "--replica-id scaler-0") || got.Other != "cccc") {
			t.Errorf("%s: %v; want an error naming the id and the other instance", c.name, got)
		}
	}
}

// Until one of this process's own messages has come back there is nothing
// to compare with: nothing is refused, however skewed the clocks.
func TestTwinNeedsOwnMessageFirst(t *testing.T) {
	start := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	r := &Replicator{opts: Options{Replica: "scaler-0"}, log: slog.New(slog.DiscardHandler), instance: "aaaa", started: start, now: func() time.Time { return start }}
	m := &Message{PublishTime: start.Add(time.Hour), Attributes: map[string]string{attrInstance: "bbbb", attrStarted: strconv.FormatInt(start.Add(-time.Hour).UnixNano(), 10)}}
	if got := r.twin(m); got != nil {
		t.Fatalf("refused before any of its own messages came back: %v", got)
	}
}
