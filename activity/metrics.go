package activity

import "github.com/prometheus/client_golang/prometheus"

// metrics are the store's Prometheus metrics.
type metrics struct {
	orgs        *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	events      prometheus.Counter
	writes      prometheus.Counter
	refused     prometheus.Counter
	writeErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		orgs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orgscaler_orgs", Help: "Orgs known to the scaler, by state (active or dormant).",
		}, []string{"state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgscaler_org_transitions_total", Help: "Orgs that woke or went dormant, by direction (wake, dormant).",
		}, []string{"direction"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgscaler_activity_events_total", Help: "Activity events received (before coalescing).",
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgscaler_badger_org_writes_total", Help: "Org records written to Badger (after coalescing).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgscaler_org_limit_refusals_total", Help: "Activity for new orgs refused because the scaler holds --max-orgs orgs.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgscaler_badger_write_errors_total", Help: "Org writes that failed or were held back (disk nearly full); the orgs stay in memory and are written again.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.orgs, m.transitions, m.events, m.writes, m.refused, m.writeErrors)
	}
	return m
}

// moved counts an org moving between states; from "" is a new org.
func (m *metrics) moved(from, to string) {
	if from != "" {
		m.orgs.WithLabelValues(from).Dec()
	}
	if to != "" {
		m.orgs.WithLabelValues(to).Inc()
	}
	switch {
	case from == "dormant" && to == "active":
		m.transitions.WithLabelValues("wake").Inc()
	case from == "active" && to == "dormant":
		m.transitions.WithLabelValues("dormant").Inc()
	}
}
