package usage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Hour is one workload's figures over one hour, as replicas exchange them:
// the fleet's leader counts, every replica keeps the same hours.
type Hour struct {
	Start time.Time // the hour's first instant
	ID    string    // the workload, as ID names it
	Figures
}

// merge makes f the larger of f and o, field by field. Within an hour a
// workload's figures only grow, so the larger is the later: merging
// commutes and is idempotent, whatever order and however often Pub/Sub
// delivers, and a new leader that goes on from the figures it holds never
// lowers what the last one published.
func (f *Figures) merge(o Figures) {
	if o.Tracked > f.Tracked || f.Kind == "" {
		f.Kind, f.Org, f.GPUs = o.Kind, o.Org, o.GPUs
	}
	f.Tracked = max(f.Tracked, o.Tracked)
	f.Active = max(f.Active, o.Active)
	f.ReplicaTime = max(f.ReplicaTime, o.ReplicaTime)
	f.AlwaysOnReplica = max(f.AlwaysOnReplica, o.AlwaysOnReplica)
	f.GPUTime = max(f.GPUTime, o.GPUTime)
	f.AlwaysOnGPU = max(f.AlwaysOnGPU, o.AlwaysOnGPU)
	for i := range f.Wakes {
		f.Wakes[i] = max(f.Wakes[i], o.Wakes[i])
	}
}

// Merge applies hours another replica counted, and returns once they are
// on disk. Hours past the retention are dropped.
func (l *Ledger) Merge(hours []Hour, now time.Time) error {
	oldest := now.Add(-l.retention)
	wb := l.db.NewWriteBatch()
	defer wb.Cancel()
	var errs []error
	for _, h := range hours {
		if h.Start.Before(oldest) {
			continue
		}
		k := bucketKey{hourOf(h.Start), h.ID}
		l.mu.Lock()
		own := l.dirty[k] // counted here too, still to be published
		f := l.hour(k)
		f.merge(h.Figures)
		merged := *f
		if !own {
			delete(l.dirty, k) // written below: nothing of this replica's to publish
		}
		l.mu.Unlock()
		errs = append(errs, wb.SetEntry(badger.NewEntry(hourKey(k), merged.marshal()).WithTTL(l.retention+time.Hour)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write merged usage: %w", err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write merged usage: %w", err)
	}
	return l.db.Sync()
}

// Export sends every hour kept on disk (at most 1,000 per call), for a
// replica that starts empty. Hours only in memory go with the next flush.
func (l *Ledger) Export(send func([]Hour) error) error {
	var chunk []Hour
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: hourPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k, ok := parseHourKey(it.Item().Key())
			if !ok {
				continue
			}
			err := it.Item().Value(func(v []byte) error {
				f, err := unmarshal(v)
				chunk = append(chunk, Hour{Start: time.Unix(k.hour, 0).UTC(), ID: k.id, Figures: f})
				return err
			})
			if err != nil {
				return fmt.Errorf("usage of %q at %s: %w", k.id, time.Unix(k.hour, 0).UTC(), err)
			}
			if len(chunk) == 1000 {
				if err := send(chunk); err != nil {
					return err
				}
				chunk = nil
			}
		}
		return nil
	})
	if err == nil && len(chunk) > 0 {
		err = send(chunk)
	}
	return err
}

// Pause stops counting the workloads followed so far: their last answers
// count up to now and are forgotten, so a replica that stops being the
// fleet's leader never counts the time another one counts. Counting goes
// on at the next Observe, as for a workload seen for the first time.
func (l *Ledger) Pause(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, s := range l.last {
		if now.After(s.at) {
			l.accrue(id, *s, s.at, min(now.Sub(s.at), MaxGap))
		}
	}
	clear(l.last)
	l.full = false
}
