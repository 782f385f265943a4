package usage

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Row is one workload's figures over a report's window.
type Row struct {
	ScaledObject string // namespace/name
	Metric       string // the trigger's metric name: one ScaledObject may have several triggers
	Figures
}

// ID names a trigger of a ScaledObject in the ledger.
func ID(scaledObject, metric string) string { return scaledObject + "\x00" + metric }

func SplitID(id string) (scaledObject, metric string) {
	scaledObject, metric, _ = strings.Cut(id, "\x00")
	return scaledObject, metric
}

// Report sums, per workload, the hours from the one holding since up to
// now. Hours older than the retention are gone. Rows are sorted by org,
// then workload.
func (l *Ledger) Report(since time.Time) (from time.Time, rows []Row, err error) {
	start := hourOf(since)
	l.mu.Lock()
	mem := make(map[bucketKey]Figures)
	for k, f := range l.hours {
		if k.hour >= start {
			mem[k] = f.stored()
		}
	}
	l.mu.Unlock()
	sums := map[string]*Figures{}
	add := func(id string, f Figures) {
		s, ok := sums[id]
		if !ok {
			s = &Figures{}
			sums[id] = s
		}
		s.Add(f)
	}
	err = l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: hourPrefix})
		defer it.Close()
		for it.Seek(hourKey(bucketKey{hour: start})); it.Valid(); it.Next() {
			k, ok := parseHourKey(it.Item().Key())
			if !ok {
				continue
			}
			if _, ok := mem[k]; ok {
				continue // memory is newer
			}
			err := it.Item().Value(func(v []byte) error {
				f, err := unmarshal(v)
				add(k.id, f)
				return err
			})
			if err != nil {
				return fmt.Errorf("usage of %q at %s: %w", k.id, time.Unix(k.hour, 0).UTC(), err)
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, nil, err
	}
	for k, f := range mem {
		add(k.id, f)
	}
	for id, f := range sums {
		so, metric := SplitID(id)
		rows = append(rows, Row{ScaledObject: so, Metric: metric, Figures: *f})
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Org != b.Org {
			return a.Org < b.Org
		}
		if a.ScaledObject != b.ScaledObject {
			return a.ScaledObject < b.ScaledObject
		}
		return a.Metric < b.Metric
	})
	return time.Unix(start, 0), rows, nil
}

// Retention is how far back reports reach.
func (l *Ledger) Retention() time.Duration { return l.retention }

// collector exports the all-time totals, the same figures reports sum.
type collector struct{ l *Ledger }

var (
	usageLabels = []string{"scaled_object", "metric", "kind", "org", "gpu_type"}
	usageDescs  = []struct {
		desc *prometheus.Desc
		get  func(*Figures) time.Duration
	}{
		{prometheus.NewDesc("orgscaler_usage_tracked_seconds_total", "Time the scaler answered KEDA for the workload, since the scaler started.", usageLabels, nil),
			func(f *Figures) time.Duration { return f.Tracked }},
		{prometheus.NewDesc("orgscaler_usage_active_seconds_total", "Time the workload was answered active, since the scaler started.", usageLabels, nil),
			func(f *Figures) time.Duration { return f.Active }},
		{prometheus.NewDesc("orgscaler_usage_replica_seconds_total", "Replicas asked for × time (replica-seconds), since the scaler started.", usageLabels, nil),
			func(f *Figures) time.Duration { return f.ReplicaTime }},
		{prometheus.NewDesc("orgscaler_usage_always_on_replica_seconds_total", "Replica-seconds an always-on deployment (minReplicaCount 1) would have used over the same time, since the scaler started.", usageLabels, nil),
			func(f *Figures) time.Duration { return f.AlwaysOnReplica }},
		{prometheus.NewDesc("orgscaler_usage_gpu_seconds_total", "GPU-seconds asked for: replica-seconds × gpusPerReplica, since the scaler started.", usageLabels, nil),
			func(f *Figures) time.Duration { return f.GPUTime }},
		{prometheus.NewDesc("orgscaler_usage_always_on_gpu_seconds_total", "GPU-seconds an always-on deployment would have used, since the scaler started.", usageLabels, nil),
			func(f *Figures) time.Duration { return f.AlwaysOnGPU }},
	}
	wakesDesc = prometheus.NewDesc("orgscaler_usage_wakes_total", "Inactive→active changes of the workload's answer, by cause (activity, hint, backlog, admin, schedule, pre-warm).",
		append(append([]string{}, usageLabels...), "cause"), nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range usageDescs {
		ch <- d.desc
	}
	ch <- wakesDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	// Copied first, so a slow scrape never holds up KEDA's answers.
	c.l.mu.Lock()
	totals := make(map[string]Figures, len(c.l.totals))
	for id, f := range c.l.totals {
		totals[id] = *f
	}
	c.l.mu.Unlock()
	for id, f := range totals {
		so, metric := SplitID(id)
		for _, d := range usageDescs {
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, d.get(&f).Seconds(), so, metric, f.Kind, f.Org, f.GPUType)
		}
		for _, cause := range Causes {
			ch <- prometheus.MustNewConstMetric(wakesDesc, prometheus.CounterValue, float64(f.Wakes[cause]), so, metric, f.Kind, f.Org, f.GPUType, cause.String())
		}
	}
}
