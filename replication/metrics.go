package replication

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	publishErrors, held prometheus.Counter
	published, applied  *prometheus.CounterVec
	rejected            *prometheus.CounterVec
}

// registerPending exports what waits to be published: how many items,
// and for how long nothing was (what the lag alert reads, since a busy
// replica always has a few items queued behind the publish in flight).
func (r *Replicator) registerPending(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orgscaler_replication_pending_items",
			Help: "Items accepted here and not yet published to the replication topic (all kinds, and hints)."},
			func() float64 {
				r.mu.Lock()
				defer r.mu.Unlock()
				return float64(r.pendingLocked())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orgscaler_replication_stalled_seconds",
			Help: "How long items have waited here with no publish to the replication topic succeeding (0 while nothing waits, or publishes go through): the other replicas are not hearing of them."},
			func() float64 { return r.stalledFor().Seconds() }))
}

// stalledFor is how long items have waited with no publish succeeding.
func (r *Replicator) stalledFor() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.queued() {
		return 0
	}
	since := r.waitingSince
	if r.lastPublish.After(since) {
		since = r.lastPublish
	}
	return max(0, r.now().Sub(since))
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orgscaler_replication_published_changes_total",
			Help: "Items this replica published to the replication topic, by kind: orgs (org changes), idle_times, history (days), usage (ledger hours)."}, []string{"kind"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orgscaler_replication_applied_changes_total",
			Help: "Items from other replicas applied here, by kind (as published)."}, []string{"kind"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_replication_publish_errors_total", Help: "Publishes to the replication topic that failed (and were retried)."}),
		held: prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_replication_stamps_held_total",
			Help: "Stamps from other replicas further ahead than --max-clock-skew, held to it (a replica's clock is ahead)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orgscaler_replication_rejected_total",
			Help: "Replication messages or changes dropped, by reason: unauthenticated (no valid signature), undecodable, invalid (naming no valid org)."}, []string{"reason"}),
	}
	for _, r := range []string{"unauthenticated", "undecodable", "invalid"} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.published, m.applied, m.publishErrors, m.held, m.rejected)
	}
	return m
}
