package activity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/orgscaler/orgscaler/storage"
)

// TombstoneTTL is how long a delete's tombstone is kept. A replica away
// longer than this may hold orgs the others deleted and forgot: it must
// not bring them back (see Prune).
const TombstoneTTL = tombTTL

// aliveKey holds when this store last flushed: how long it was away
// before a start.
var aliveKey = storage.Alive.Key("")

// markAlive notes now as the last time this store ran; a failure costs
// only that note, so it is logged, not returned.
func (s *Store) markAlive() {
	if s.CheckDisk() != nil {
		return
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(aliveKey, binary.AppendVarint(nil, s.opts.Now().UnixNano()))
	})
	if err != nil {
		s.log.Debug("could not note the time this store last ran", "err", err)
	}
}

// loadAlive reads when the store last ran (zero: never noted).
func loadAlive(txn *badger.Txn) (time.Time, error) {
	item, err := txn.Get(aliveKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	var at time.Time
	err = item.Value(func(v []byte) error {
		ns, n := binary.Varint(v)
		if n <= 0 {
			return fmt.Errorf("%s: %w", aliveKey, errCorrupt)
		}
		at = time.Unix(0, ns)
		return nil
	})
	return at, err
}

// LastAlive is when this store last ran before this start (zero: never
// noted, a new store or an older version's).
func (s *Store) LastAlive() time.Time { return s.lastAlive }

// Prune removes, here only, every org keep does not want: neither
// published nor a change to anything else, with a local tombstone so no
// old message brings it back. A replica back from longer than
// TombstoneTTL away keeps only what a peer's snapshot holds: the orgs it
// has besides were deleted elsewhere, and their tombstones are gone.
func (s *Store) Prune(keep func(org string) bool) (int, error) {
	var drop []string
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id := range sh.orgs {
			if !keep(id) {
				drop = append(drop, id)
			}
		}
		sh.mu.Unlock()
	}
	for _, id := range drop {
		if err := s.prune(id); err != nil {
			return 0, err
		}
	}
	return len(drop), nil
}

func (s *Store) prune(id string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	d := s.clock.Now()
	if err := s.erase(id, d); err != nil {
		return err
	}
	s.forget(s.shard(id), id, d)
	s.deleted(id)
	s.log.Info("org pruned: this replica was away longer than tombstones are kept, and no peer holds it", "org", id)
	return nil
}
