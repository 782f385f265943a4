package pubsubdepth

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	depthAgeDesc = prometheus.NewDesc("orgscaler_depth_age_seconds",
		"Age of the newest backlog point of each tracked subscription.", []string{"subscription"}, nil)
	depthDesc = prometheus.NewDesc("orgscaler_depth_messages",
		"Backlog counted for each tracked subscription whose backlog is known (point plus hints).", []string{"subscription"}, nil)
	hintsDesc = prometheus.NewDesc("orgscaler_hints_in_force",
		"Hinted messages still counted, per subscription.", []string{"subscription"}, nil)
	blindDesc = prometheus.NewDesc("orgscaler_depth_unknown",
		"1 for each tracked subscription whose backlog is not known (KEDA gets Unavailable).", []string{"subscription"}, nil)
)

// Collector exposes what the tracker knows, read at scrape time.
func (t *Tracker) Collector() prometheus.Collector { return trackerCollector{t} }

type trackerCollector struct{ t *Tracker }

func (c trackerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthAgeDesc
	ch <- depthDesc
	ch <- hintsDesc
	ch <- blindDesc
}

func (c trackerCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.t.opts.Now()
	for _, d := range c.t.Snapshot() {
		if !d.Observed.At.IsZero() {
			ch <- prometheus.MustNewConstMetric(depthAgeDesc, prometheus.GaugeValue, now.Sub(d.Observed.At).Seconds(), d.Subscription)
		}
		if d.Known {
			ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.Messages), d.Subscription)
		}
		ch <- prometheus.MustNewConstMetric(hintsDesc, prometheus.GaugeValue, float64(d.Hint), d.Subscription)
		blind := 0.0
		if !d.Known {
			blind = 1
		}
		ch <- prometheus.MustNewConstMetric(blindDesc, prometheus.GaugeValue, blind, d.Subscription)
	}
}
