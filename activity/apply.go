package activity

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/storage"
)

// tombTTL is how long a delete's tombstone is kept: longer than Pub/Sub
// keeps a message (7 days), so no redelivered change can outlive it.
const tombTTL = 8 * 24 * time.Hour

var tombPrefix = []byte(storage.Tombs.Prefix)

func tombKey(id string) []byte {
	k := make([]byte, 0, len(tombPrefix)+len(id))
	return append(append(k, tombPrefix...), id...)
}

// erase deletes id's record and writes its tombstone at d, synced.
func (s *Store) erase(id string, d hlc.Stamp) error {
	if err := s.CheckDisk(); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	if err := wb.Delete(orgKey(id)); err != nil {
		return fmt.Errorf("delete org %q: %w", id, err)
	}
	if err := wb.SetEntry(badger.NewEntry(tombKey(id), binary.AppendVarint(nil, int64(d))).WithTTL(tombTTL)); err != nil {
		return fmt.Errorf("delete org %q: %w", id, err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("delete org %q: %w", id, err)
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("sync data dir: %w", err)
	}
	return nil
}

// addTomb keeps d as id's tombstone if it is the latest, dropping expired
// ones when the shard holds many. Caller holds sh.mu.
func (s *Store) addTomb(sh *shard, id string, d hlc.Stamp) {
	if sh.tombs == nil {
		sh.tombs = map[string]hlc.Stamp{}
	}
	if len(sh.tombs) >= 1024 {
		horizon := hlc.Stamp(s.opts.Now().Add(-tombTTL).UnixNano())
		for k, t := range sh.tombs {
			if t < horizon {
				delete(sh.tombs, k)
			}
		}
	}
	if d > sh.tombs[id] {
		sh.tombs[id] = d
	}
}

// loadTombs reads the tombstones Badger has not expired yet.
func (s *Store) loadTombs(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: tombPrefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		id := string(item.Key()[len(tombPrefix):])
		err := item.Value(func(v []byte) error {
			d, n := binary.Varint(v)
			if n <= 0 {
				return fmt.Errorf("tombstone of org %q: %w", id, errCorrupt)
			}
			sh := s.shard(id)
			s.addTomb(sh, id, hlc.Stamp(d))
			s.clock.Observe(hlc.Stamp(d))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Apply merges changes made by other replicas into the store: the same
// rules as local changes (see Change), in any order, any number of times.
// Everything applied is on disk (synced) when it returns, so a replica
// that acknowledges a change after Apply never loses it. Only orgs the
// changes move are written: a redelivery, or a peer's whole snapshot
// applied to an equal replica, writes nothing.
func (s *Store) Apply(changes []Change) error {
	written := make([]string, 0, len(changes))
	for _, c := range changes {
		s.observe(c)
		if c.Deleted != 0 {
			if err := s.applyDelete(c); err != nil {
				return err
			}
			continue
		}
		if s.applyWrite(c) {
			written = append(written, c.Org)
		}
	}
	if len(written) == 0 {
		return nil
	}
	if err := s.writeIDs(written, false); err != nil {
		// In force in memory already: the flusher writes it once it can,
		// as a redelivery or a retried import would find nothing to write.
		s.redirty(written)
		return err
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("sync data dir: %w", err)
	}
	return nil
}

// observe moves this replica's clock past c's stamps, so its next writes
// win over what it has seen.
func (s *Store) observe(c Change) {
	s.clock.Observe(max(c.ScaleToZeroAt, c.IdleWindowAt, c.WarmScheduleAt, c.PoolWeightAt, c.Deleted))
}

func (s *Store) applyDelete(c Change) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	sh := s.shard(c.Org)
	sh.mu.Lock()
	if old := sh.tombs[c.Org]; c.Deleted <= old {
		sh.mu.Unlock()
		return nil // seen already
	}
	sh.mu.Unlock()
	if err := s.erase(c.Org, c.Deleted); err != nil {
		return err
	}
	// An org that something later keeps is rewritten by forget.
	_, watchers := s.forget(sh, c.Org, c.Deleted)
	s.deleted(c.Org)
	s.log.Info("org deleted by another replica", "org", c.Org, "open_streams", watchers)
	return nil
}

// applyWrite merges activity and settings in memory, and says whether the
// org changed (Apply then writes it). Caller holds nothing.
func (s *Store) applyWrite(c Change) bool {
	now := s.opts.Now()
	sh := s.shard(c.Org)
	sh.mu.Lock()
	tomb := sh.tombs[c.Org]
	e, ok := sh.orgs[c.Org]
	created := false
	if !ok {
		if !c.creates(tomb) {
			sh.mu.Unlock()
			return false
		}
		e = s.insert(sh, c.Org, record{FirstSeen: stampOf(now), ScaleToZero: true})
		created = true
	}
	before := e.rec
	rec := e.rec
	moved := mergeActivity(&rec, stampOf(c.Activity), tomb)
	changedSettings := mergeSettings(&rec, c, tomb)
	woke, slept, next := s.settle(&rec, now)
	e.rec = rec
	switch {
	case created:
		s.metrics.moved("", stateOf(rec))
	case woke || slept:
		s.metrics.moved(stateOf(before), stateOf(rec))
	}
	// Not marked for a flush: Apply writes and syncs it before it returns.
	s.rearm(c.Org, e, next)
	changed := created || moved || changedSettings || woke || slept
	if changed {
		e.notify()
	}
	o := s.snapshot(c.Org, e)
	sh.mu.Unlock()
	switch {
	case woke:
		s.log.Info("org woke", "org", c.Org, "reason", "a change from another replica", "dormant_since", before.DormantSince.Time())
		s.transition(Transition{Org: c.Org, Woke: true, Reason: WakeActivity, LastActivity: o.LastActivity,
			DormantSince: before.DormantSince.Time(), IdleWindow: o.IdleWindow})
	case slept:
		s.transition(Transition{Org: c.Org, LastActivity: o.LastActivity, DormantSince: o.DormantSince, IdleWindow: o.IdleWindow})
	}
	return changed
}

// exportChunk is how many changes Export hands over at a time.
const exportChunk = 1000

// Export hands every org's state (last activity, settings with their
// stamps) and every tombstone to send as Changes, a chunk at a time, each
// chunk read under one shard's lock and sent outside it. Applied to an
// empty store, they make it equal to this one.
func (s *Store) Export(send func([]Change) error) error {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		changes := make([]Change, 0, len(sh.orgs)+len(sh.tombs))
		for id, e := range sh.orgs {
			changes = append(changes, e.rec.change(id))
		}
		for id, d := range sh.tombs {
			changes = append(changes, Change{Org: id, Deleted: d})
		}
		sh.mu.Unlock()
		for len(changes) > 0 {
			n := min(len(changes), exportChunk)
			if err := send(changes[:n]); err != nil {
				return err
			}
			changes = changes[n:]
		}
	}
	return nil
}

// change is the Change that makes an org's state from nothing.
func (r record) change(id string) Change {
	c := Change{Org: id}
	if r.LastActivity != 0 {
		c.Activity = r.LastActivity.Time()
	}
	if r.ScaleToZeroAt != 0 {
		v := r.ScaleToZero
		c.ScaleToZero, c.ScaleToZeroAt = &v, r.ScaleToZeroAt
	}
	if r.IdleWindowAt != 0 {
		w := r.IdleWindow
		c.IdleWindow, c.IdleWindowAt = &w, r.IdleWindowAt
	}
	if r.ScheduleAt != 0 {
		text := r.Schedule.String()
		c.WarmSchedule, c.WarmScheduleAt = &text, r.ScheduleAt
	}
	if r.PoolWeightAt != 0 {
		w := r.poolWeight()
		c.PoolWeight, c.PoolWeightAt = &w, r.PoolWeightAt
	}
	return c
}

// Len is the number of orgs held.
func (s *Store) Len() int { return int(s.count.Load()) }
