package replication

import (
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/usage"
)

// Hours queued for publishing coalesce to the latest per hour, workload
// and term; a failed publish puts its hours back behind any newer ones.
func TestUsageQueueKeepsTheLatest(t *testing.T) {
	r := &Replicator{q: newQueue(), published: make(chan struct{}), kick: make(chan struct{}, 1), m: newMetrics(nil)}
	hour := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	at := func(tracked time.Duration, term string) usage.Hour {
		return usage.Hour{Start: hour, ID: usage.ID("ml/pynode", "m"), Term: term, Figures: usage.Figures{Tracked: tracked}}
	}
	r.EnqueueUsage([]usage.Hour{at(time.Minute, "a-1"), at(time.Minute, "b-1")})
	r.EnqueueUsage([]usage.Hour{at(2*time.Minute, "a-1")})
	_, p := r.take()
	if len(p.usage) != 2 {
		t.Fatalf("took %d hours, want one per term: %+v", len(p.usage), p.usage)
	}
	for _, h := range p.usage {
		if h.Term == "a-1" && h.Tracked != 2*time.Minute {
			t.Fatalf("term a-1 took %s, want the latest (2m)", h.Tracked)
		}
	}
	r.EnqueueUsage([]usage.Hour{at(3*time.Minute, "a-1")}) // while the publish is failing
	r.requeue(p, nil)
	_, again := r.take()
	for _, h := range again.usage {
		if h.Term == "a-1" && h.Tracked != 3*time.Minute {
			t.Fatalf("after the requeue term a-1 is at %s, want the newer 3m", h.Tracked)
		}
	}
	if len(again.usage) != 2 {
		t.Fatalf("after the requeue %d hours, want 2", len(again.usage))
	}
}
