package pool

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports every pool's last turn; a deleted pool's series go
// with it.
type collector struct {
	loop          *Loop
	gpus, queued  *prometheus.Desc
	overcommitted *prometheus.Desc
}

// Register exports the loop's pools to reg: orgscaler_pool_gpus by kind
// (capacity, demanded, granted), orgscaler_pool_queued and
// orgscaler_pool_overcommitted.
func (l *Loop) Register(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	reg.MustRegister(&collector{loop: l,
		gpus: prometheus.NewDesc("orgscaler_pool_gpus",
			"GPUs of each pool at its last turn: its capacity, what its members ask (demanded) and what they are granted.", []string{"pool", "kind"}, nil),
		queued: prometheus.NewDesc("orgscaler_pool_queued",
			"Members of each pool waiting to wake: for capacity, or for their turn under the wake rate.", []string{"pool"}, nil),
		overcommitted: prometheus.NewDesc("orgscaler_pool_overcommitted",
			"1 while a pool's members' minReplicaCounts alone exceed it: each gets its minimum, and granted is above capacity.", []string{"pool"}, nil),
	})
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.gpus
	ch <- c.queued
	ch <- c.overcommitted
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range *c.loop.states.Load() {
		ch <- prometheus.MustNewConstMetric(c.gpus, prometheus.GaugeValue, float64(st.GPUs), name, "capacity")
		ch <- prometheus.MustNewConstMetric(c.gpus, prometheus.GaugeValue, float64(st.Demanded), name, "demanded")
		ch <- prometheus.MustNewConstMetric(c.gpus, prometheus.GaugeValue, float64(st.Granted), name, "granted")
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(len(st.Queue)), name)
		over := 0.0
		if st.Overcommitted {
			over = 1
		}
		ch <- prometheus.MustNewConstMetric(c.overcommitted, prometheus.GaugeValue, over, name)
	}
}
