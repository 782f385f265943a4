package activity

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/pacing"
	"github.com/orgscaler/orgscaler/storage"
)

func (s *Store) flushLoop() {
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.flush(false); err != nil {
				s.log.Error("flush failed; will retry", "err", err)
			}
			s.markAlive()
		case <-s.urgentC:
			if err := s.flush(true); err != nil {
				s.log.Error("flush of org transitions failed; will retry", "err", err)
			}
		}
	}
}

type pending struct {
	id  string
	val []byte
}

// flush writes dirty orgs: only the urgent ones when urgentOnly is set.
// An org that fails to write stays dirty and is tried again.
func (s *Store) flush(urgentOnly bool) error {
	start := time.Now()
	ids, urgent := s.takeDirty(urgentOnly)
	if len(ids) == 0 {
		return nil
	}
	if urgentOnly {
		if err := s.writeIDs(ids, false); err != nil {
			s.redirty(ids)
			return err
		}
	} else if err := s.writePaced(ids); err != nil {
		return err
	}
	if urgent {
		// Transitions and new orgs are rare and must outlive the machine,
		// not only the process, whichever flush wrote them.
		if err := s.sync(); err != nil {
			return fmt.Errorf("sync data dir: %w", err)
		}
	}
	if took := time.Since(start); took > s.opts.FlushInterval/2 {
		s.log.Warn("slow flush: a crash now loses more than one flush interval of activity", "orgs", len(ids), "took", took, "urgent", urgentOnly)
	} else {
		s.log.Debug("flushed", "orgs", len(ids), "took", took, "urgent", urgentOnly)
	}
	return nil
}

// takeDirty returns the orgs to write and marks them clean: the urgent ones
// only, or every dirty one; urgent says whether a transition or a new org
// is among them.
func (s *Store) takeDirty(urgentOnly bool) (ids []string, urgent bool) {
	s.urgentMu.Lock()
	pending := s.urgent
	s.urgent = make(map[string]struct{})
	s.urgentMu.Unlock()
	urgent = len(pending) > 0
	if urgentOnly {
		for id := range pending {
			sh := s.shard(id)
			sh.mu.Lock()
			if e, ok := sh.orgs[id]; ok && e.dirty {
				e.dirty = false // stays in sh.dirty; the next full flush skips it
				ids = append(ids, id)
			}
			sh.mu.Unlock()
		}
		return ids, urgent
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, id := range sh.dirty {
			if e, ok := sh.orgs[id]; ok && e.dirty {
				e.dirty = false
				ids = append(ids, id)
			}
		}
		sh.dirty = sh.dirty[:0]
		sh.mu.Unlock()
	}
	return ids, urgent
}

// sync makes what was written survive the machine: fsync.
func (s *Store) sync() error {
	if hook := s.syncHook.Load(); hook != nil {
		(*hook)()
	}
	return s.db.Sync()
}

// flushChunk is how many orgs one write of a full flush holds.
const flushChunk = 1024

// writePaced writes ids in chunks, paced (package pacing) within half the
// flush interval. What is not written is marked dirty again.
func (s *Store) writePaced(ids []string) error {
	_, err := pacing.Write(len(ids), pacing.Options{Chunk: flushChunk, Deadline: time.Now().Add(s.opts.FlushInterval / 2),
		Rest: s.rest, Hurry: s.closing}, func(lo, hi int) error {
		if err := s.writeIDs(ids[lo:hi], hi == len(ids)); err != nil {
			s.redirty(ids[lo:])
			return err
		}
		return nil
	})
	return err
}

// rest waits d between the chunks of a full flush, writing transitions and
// new orgs meanwhile: they are due at once, not after the full flush.
func (s *Store) rest(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-s.done:
			return
		case <-s.urgentC:
			if err := s.flush(true); err != nil {
				s.log.Error("flush of org transitions failed; will retry", "err", err)
			}
		}
	}
}

func (s *Store) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// writeIDs writes the orgs as they are now. Holding writeMu from snapshot
// to write keeps an older snapshot from landing after a newer one (an admin
// change writes under it too), while chunks let changes in between.
func (s *Store) writeIDs(ids []string, withCount bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	batch := make([]pending, 0, len(ids))
	for _, id := range ids {
		sh := s.shard(id)
		sh.mu.Lock()
		if e, ok := sh.orgs[id]; ok {
			batch = append(batch, pending{id, e.rec.marshal()})
		}
		sh.mu.Unlock()
	}
	return s.write(batch, withCount)
}

// write writes batch; withCount also records how many orgs there are, so
// the next start sizes its maps once instead of growing them a million
// times.
func (s *Store) write(batch []pending, withCount bool) error {
	if err := s.CheckDisk(); err != nil {
		s.metrics.writeErrors.Inc()
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, p := range batch {
		if err := wb.Set(orgKey(p.id), p.val); err != nil {
			return fmt.Errorf("write org %q: %w", p.id, err)
		}
	}
	if withCount {
		if err := wb.Set(countKey, binary.AppendUvarint(nil, uint64(s.count.Load()))); err != nil {
			return fmt.Errorf("write the org count: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		s.metrics.writeErrors.Inc()
		return fmt.Errorf("write %d orgs: %w", len(batch), err)
	}
	s.metrics.writes.Add(float64(len(batch)))
	return nil
}

func (s *Store) redirty(ids []string) {
	for _, id := range ids {
		sh := s.shard(id)
		sh.mu.Lock()
		if e, ok := sh.orgs[id]; ok {
			s.markDirty(sh, id, e)
		}
		sh.mu.Unlock()
	}
}

// CheckDisk returns a *storage.DiskFullError when the data dir's
// filesystem is nearly full.
func (s *Store) CheckDisk() error { return s.storage.CheckDisk() }

// countKey holds the number of orgs at the last full flush: a sizing hint,
// never trusted as a count.
var countKey = storage.OrgCount.Key("")

func orgKey(id string) []byte {
	k := make([]byte, 0, len(keyPrefix)+len(id))
	return append(append(k, keyPrefix...), id...)
}
