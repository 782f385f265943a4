package scaler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/trigger"
)

// metrics are the KEDA service's Prometheus metrics.
type metrics struct {
	answers *prometheus.CounterVec
	byKind  map[trigger.Kind]map[string]prometheus.Counter
	pushes  prometheus.Counter
	streams prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgscaler_answers_total",
			Help: "IsActive answers given to KEDA, by workload kind and result (active, inactive, error).",
		}, []string{"kind", "result"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgscaler_pushes_total", Help: "true pushed on StreamIsActive streams (inactive to active changes).",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orgscaler_open_streams", Help: "StreamIsActive streams open.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.answers, m.pushes, m.streams)
	}
	// Every series made once: KEDA's calls then count without hashing labels.
	m.byKind = map[trigger.Kind]map[string]prometheus.Counter{}
	for _, k := range []trigger.Kind{trigger.KindPynode, trigger.KindModel, trigger.KindWorker} {
		m.byKind[k] = map[string]prometheus.Counter{}
		for _, r := range []string{"active", "inactive", "error"} {
			m.byKind[k][r] = m.answers.WithLabelValues(string(k), r)
		}
	}
	return m
}

// answer is the counter of one kind and result.
func (m *metrics) answer(k trigger.Kind, result string) prometheus.Counter {
	if c, ok := m.byKind[k][result]; ok {
		return c
	}
	return m.answers.WithLabelValues(string(k), result)
}
