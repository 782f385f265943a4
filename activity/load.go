package activity

import (
	"encoding/binary"
	"fmt"
	"runtime/debug"

	"github.com/dgraph-io/badger/v4"
)

// load reads every org, and turns dormant those whose window ran out while
// the scaler was down, at the instant it ran out.
func (s *Store) load() error {
	now := s.opts.Now()
	var n, dormant int
	var schedule []due
	err := s.db.View(func(txn *badger.Txn) error {
		if hint := countHint(txn); hint > 0 {
			for i := range s.shards {
				s.shards[i].orgs = make(map[string]*entry, hint/shardCount+hint/shardCount/16)
			}
			schedule = make([]due, 0, hint)
		}
		// Values are small and kept in the LSM tree: no prefetching.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: keyPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := string(item.Key()[len(keyPrefix):])
			var rec record
			err := item.Value(func(v []byte) error {
				var err error
				rec, err = unmarshalRecord(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("org %q: %w", id, err)
			}
			e := &entry{rec: rec}
			sh := s.shard(id)
			sh.orgs[id] = e
			// Stamps written before a restart (perhaps while the clock was
			// ahead) are observed, so a setting changed now wins over them.
			s.clock.Observe(max(rec.ScaleToZeroAt, rec.IdleWindowAt, rec.ScheduleAt))
			n++
			woke, slept, next := s.settle(&e.rec, now)
			switch {
			case woke:
				// Saved dormant, but its window in force now (a longer
				// --idle-window) or its schedule covers it.
				s.markDirty(sh, id, e)
				s.log.Info("org woke", "org", id, "reason", "its idle window or warm schedule covers it now",
					"last_activity", rec.LastActivity.Time(), "idle_window", s.window(rec), "warm_schedule", rec.Schedule.String())
			case slept:
				s.markDirty(sh, id, e)
				s.log.Info("org went dormant while the scaler was down", "org", id,
					"last_activity", rec.LastActivity.Time(), "dormant_since", e.rec.DormantSince.Time())
			}
			if !next.IsZero() {
				e.scheduled = stampOf(next)
				schedule = append(schedule, due{at: e.scheduled, org: id})
			}
			if !e.rec.DormantSince.IsZero() {
				dormant++
			}
		}
		var err error
		if s.lastAlive, err = loadAlive(txn); err != nil {
			return err
		}
		return s.loadTombs(txn)
	})
	if err != nil {
		return fmt.Errorf("load orgs from %s: %w", s.storage.Dir(), err)
	}
	s.sched.addAll(schedule)
	s.count.Store(int64(n))
	s.metrics.orgs.WithLabelValues("active").Add(float64(n - dormant))
	s.metrics.orgs.WithLabelValues("dormant").Add(float64(dormant))
	s.log.Info("loaded orgs", "orgs", n, "dormant", dormant, "dir", s.storage.Dir())
	if n > 100_000 {
		// Loading churns through several times the memory it keeps; give
		// that back now rather than carry it as resident memory.
		debug.FreeOSMemory()
	}
	return nil
}

// countHint is the org count the last full flush wrote, or 0.
func countHint(txn *badger.Txn) int {
	item, err := txn.Get(countKey)
	if err != nil {
		return 0
	}
	var n uint64
	_ = item.Value(func(v []byte) error {
		n, _ = binary.Uvarint(v)
		return nil
	})
	return int(min(n, 1<<23)) // a damaged value must not reserve gigabytes
}
