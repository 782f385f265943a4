package scaler

import "github.com/prometheus/client_golang/prometheus"

// metrics are the KEDA service's Prometheus metrics.
type metrics struct {
	answers *prometheus.CounterVec
	pushes  prometheus.Counter
	streams prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scaler_answers_total",
			Help: "IsActive answers given to KEDA, by workload kind and result (active, inactive, error).",
		}, []string{"kind", "result"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scaler_pushes_total", Help: "true pushed on StreamIsActive streams (inactive to active changes).",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scaler_open_streams", Help: "StreamIsActive streams open.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.answers, m.pushes, m.streams)
	}
	return m
}
