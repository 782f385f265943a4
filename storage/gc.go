package storage

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/clock"
)

// DefaultGCInterval is how often the value log is garbage-collected.
const DefaultGCInterval = 10 * time.Minute

// gcRatio is the share of a value-log file that must be stale for Badger to
// rewrite it: half, as Badger's own docs suggest.
const gcRatio = 0.5

type metrics struct {
	gcRewrites  prometheus.Counter
	gcReclaimed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, d *DB) *metrics {
	m := &metrics{
		gcRewrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgscaler_badger_vlog_gc_rewrites_total", Help: "Value-log files Badger rewrote in garbage collection (every 10 minutes).",
		}),
		gcReclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgscaler_badger_vlog_reclaimed_bytes_total", Help: "Bytes of value-log files freed on disk by garbage collection.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.gcRewrites, m.gcReclaimed,
			// Read at each scrape: what the disk alert compares.
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orgscaler_data_dir_free_bytes",
				Help: "Free space on the data dir's filesystem; below orgscaler_data_dir_min_free_bytes nothing is written (--min-free-disk-mb)."},
				func() float64 {
					free, err := d.free()
					if err != nil {
						return math.NaN()
					}
					return float64(free)
				}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orgscaler_data_dir_min_free_bytes",
				Help: "--min-free-disk-mb in bytes: the free space below which nothing is written (0: the check is off)."},
				func() float64 { return float64(d.o.MinFreeDisk) }))
	}
	return m
}

// RunGC reclaims the value log every interval until ctx ends. Badger never
// does it by itself, and values past its threshold (history days, idle
// counts) are rewritten at every flush, leaving the old ones behind.
func (d *DB) RunGC(ctx context.Context, every time.Duration) {
	clock.Every(ctx, every, func() {
		if err := d.GC(ctx); err != nil {
			d.log.Warn("value-log garbage collection failed; retrying at the next interval", "err", err)
		}
	})
}

// GC rewrites value-log files while Badger finds one at least half stale,
// and counts the bytes this frees on disk.
func (d *DB) GC(ctx context.Context) error {
	dir := d.db.Opts().ValueDir
	before := vlogBytes(dir)
	var err error
	for ctx.Err() == nil {
		if err = d.db.RunValueLogGC(gcRatio); err != nil {
			break
		}
		d.metrics.gcRewrites.Inc()
	}
	if freed := before - vlogBytes(dir); freed > 0 {
		d.metrics.gcReclaimed.Add(float64(freed))
	}
	if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
		return nil // nothing (more) worth rewriting, or the database is closing
	}
	return err
}

// vlogBytes is the size of dir's value-log files.
func vlogBytes(dir string) int64 {
	files, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}
