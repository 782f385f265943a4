package activity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DefaultGCInterval is how often the value log is garbage-collected.
const DefaultGCInterval = 10 * time.Minute

// gcRatio is the share of a value-log file that must be stale for Badger to
// rewrite it: half, as Badger's own docs suggest.
const gcRatio = 0.5

// RunGC reclaims the value log every interval until ctx ends. Badger never
// does it by itself, and values past its threshold (history days, idle
// counts) are rewritten at every flush, leaving the old ones behind.
func (s *Store) RunGC(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.GC(ctx); err != nil {
			s.log.Warn("value-log garbage collection failed; retrying at the next interval", "err", err)
		}
	}
}

// GC rewrites value-log files while Badger finds one at least half stale,
// and counts the bytes this frees on disk.
func (s *Store) GC(ctx context.Context) error {
	dir := s.db.Opts().ValueDir
	before := vlogBytes(dir)
	var err error
	for ctx.Err() == nil {
		if err = s.db.RunValueLogGC(gcRatio); err != nil {
			break
		}
		s.metrics.gcRewrites.Inc()
	}
	if freed := before - vlogBytes(dir); freed > 0 {
		s.metrics.gcReclaimed.Add(float64(freed))
	}
	if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
		return nil // nothing (more) worth rewriting, or the store is closing
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
