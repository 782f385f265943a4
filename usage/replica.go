package usage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Hour is one workload's figures over one hour in one leader's term, as
// replicas exchange them: the fleet's leader counts, every replica keeps
// the same hours.
type Hour struct {
	Start time.Time // the hour's first instant
	ID    string    // the workload, as ID names it
	Term  string    // the leader's term that counted it
	Figures
}

// merge makes f the larger of f and o, field by field. Within one term an
// hour's figures only grow, so the larger is the later: merging commutes
// and is idempotent, whatever order and however often Pub/Sub delivers.
// Terms are kept apart and summed, so nothing one leader counted is lost
// to another's.
func (f *Figures) merge(o Figures) {
	if o.Tracked > f.Tracked || f.Kind == "" {
		f.Kind, f.Org, f.GPUs, f.GPUType = o.Kind, o.Org, o.GPUs, o.GPUType
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

// Lead starts a leader's term: what this ledger counts from now on is
// kept under term, apart from every other term's.
func (l *Ledger) Lead(term string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.term = term
}

// Merge applies hours another replica counted, and returns once they are
// on disk. An hour that adds nothing is not written; hours past the
// retention are dropped.
func (l *Ledger) Merge(hours []Hour) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	now := l.now()
	wb := l.db.NewWriteBatch()
	defer wb.Cancel()
	var errs []error
	wrote := false
	held := map[bucketKey]Figures{} // memory's hours, merged: kept once on disk
	for _, h := range hours {
		ttl := h.Start.Add(l.retention + time.Hour).Sub(now)
		if ttl <= 0 {
			continue
		}
		k := bucketKey{hourOf(h.Start), h.ID, h.Term}
		merged, inMemory, changed, err := l.merged(k, h.Figures)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if changed && inMemory {
			held[k] = merged
		}
		if changed {
			errs = append(errs, wb.SetEntry(badger.NewEntry(hourKey(k), merged.marshal()).WithTTL(ttl)))
			wrote = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("merge usage: %w", err)
	}
	if !wrote {
		return nil
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("merge usage: %w", err)
	}
	if err := l.db.Sync(); err != nil {
		return fmt.Errorf("merge usage: %w", err)
	}
	// Memory follows only once the disk has it: a failed write leaves both
	// as they were, and the redelivery merges again.
	l.mu.Lock()
	for k, f := range held {
		if h, ok := l.hours[k]; ok {
			*h = f
		}
	}
	l.mu.Unlock()
	return nil
}

// merged is k's figures merged with o, whether memory holds the hour
// (reports read memory first), and whether the merge changed them. An
// hour memory does not hold is read from disk, outside the lock answers
// take, and not kept in memory, so a snapshot of a month of hours does
// not fill it. Caller holds writeMu: only its own term's hours, never
// merged, come into memory meanwhile.
func (l *Ledger) merged(k bucketKey, o Figures) (f Figures, inMemory, changed bool, err error) {
	l.mu.Lock()
	if h, ok := l.hours[k]; ok {
		before := *h
		l.mu.Unlock()
		f = before
		f.merge(o)
		return f, true, f != before, nil
	}
	l.mu.Unlock()
	var before Figures
	err = l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(hourKey(k))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			before, err = unmarshal(v)
			return err
		})
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return before, false, false, fmt.Errorf("usage of %q at %s: %w", k.id, time.Unix(k.hour, 0).UTC(), err)
	}
	f = before
	f.merge(o)
	return f, false, f != before, nil
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
				chunk = append(chunk, Hour{Start: time.Unix(k.hour, 0).UTC(), ID: k.id, Term: k.term, Figures: f})
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

// Follow ends a leader's term (fleet.Duty): the workloads followed so far
// count up to now (Pause) and their hours are written, handing them to
// replication, so the next leader's term counts from where this one ends.
func (l *Ledger) Follow() {
	now := l.now()
	l.Pause(now)
	if err := l.Flush(now); err != nil {
		l.log.Error("the last hours counted as leader are not written", "err", err)
	}
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
