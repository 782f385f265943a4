// Package history keeps each org's activity by the minute, one bitmap of
// 1440 minutes per org and UTC day, in the store's Badger database, for a
// week: the trace `scalerctl replay --from-scaler` runs the keep-alive
// policies over, so a platform team replays its own orgs. A minute only
// ever turns active, so replicas merge days by OR, whatever the order or
// redelivery.
package history

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/orgscaler/orgscaler/pacing"
	"github.com/orgscaler/orgscaler/storage"
)

// Minutes is the minutes of one day.
const Minutes = 1440

// Bits is one org's day: bit m is minute m (UTC), set when the org was
// active in it.
type Bits [Minutes / 8]byte

// Set marks minute m.
func (b *Bits) Set(m int) { b[m/8] |= 1 << (m % 8) }

// Has reports whether minute m is marked.
func (b *Bits) Has(m int) bool { return b[m/8]&(1<<(m%8)) != 0 }

// or sets every minute o has; it reports whether that changed b.
func (b *Bits) or(o *Bits) bool {
	changed := false
	for i := range b {
		if n := b[i] | o[i]; n != b[i] {
			b[i], changed = n, true
		}
	}
	return changed
}

// Day is one org's activity over one UTC day: what replicas exchange.
type Day struct {
	Org  string
	Day  time.Time // midnight UTC
	Bits Bits
}

// Options configure a Store.
type Options struct {
	DB     *badger.DB
	Logger *slog.Logger
	// Retention is how long a day is kept after it ends (default 7 days).
	Retention time.Duration
	// OnChange, when set, is told of each day that gained minutes here
	// (whole), for replication. It must not block.
	OnChange func(Day)
	// Holds, when set, says whether org is still held: days another
	// replica sends for an org deleted since are dropped.
	Holds func(org string) bool
	// CheckDisk, when set, is asked before every write.
	CheckDisk func() error
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultRetention is how long days are kept by default: a week to replay.
const DefaultRetention = 7 * 24 * time.Hour

// Store keeps the days. Marks wait in memory until Flush.
type Store struct {
	opts Options
	log  *slog.Logger
	// writeMu orders the read-modify-writes of Flush, Merge and Delete:
	// two at once on one day would have Badger refuse one as a conflict.
	writeMu sync.Mutex
	mu      sync.Mutex
	pending map[dayKey][]uint16 // minutes marked, not yet written
	full    chan struct{}       // pending is large: flush before the interval
}

// flushAt is how many org days pending holds before a flush comes early,
// so a burst of new orgs does not hold a minute list for each in memory.
const flushAt = 50_000

type dayKey struct {
	org string
	day int64 // Unix seconds of midnight UTC
}

// Open returns a Store on o.DB.
func Open(o Options) *Store {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{opts: o, log: o.Logger.With("component", "history"), pending: map[dayKey][]uint16{}, full: make(chan struct{}, 1)}
}

func midnight(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

var prefix = []byte(storage.History.Prefix)

// key is day's key for org: the day first, so one day reads in order.
func key(day time.Time, org string) []byte {
	return fmt.Appendf(nil, "%s%s/%s", prefix, day.Format("20060102"), org)
}

// Activity marks the minute of an org's activity at at, once per minute
// (prev: its last activity before, zero for a new org), as
// activity.Subscriber.
func (s *Store) Activity(org string, prev, at time.Time) {
	if prev.IsZero() || prev.Truncate(time.Minute) != at.Truncate(time.Minute) {
		s.Mark(org, at)
	}
}

// Forget is Delete for a deleted org, as activity.Subscriber: a failure is
// logged.
func (s *Store) Forget(org string) {
	if err := s.Delete(org); err != nil {
		s.log.Warn("history of a deleted org not removed", "org", org, "err", err)
	}
}

// Mark records org active in the minute of at.
func (s *Store) Mark(org string, at time.Time) {
	day := midnight(at)
	k := dayKey{org, day.Unix()}
	m := uint16(at.UTC().Sub(day) / time.Minute)
	s.mu.Lock()
	ms := s.pending[k]
	if len(ms) == 0 || ms[len(ms)-1] != m {
		s.pending[k] = append(ms, m)
	}
	n := len(s.pending)
	s.mu.Unlock()
	if n >= flushAt {
		select {
		case s.full <- struct{}{}:
		default:
		}
	}
}

// Flush writes the marked minutes into their days, paced in chunks (one
// transaction each) within interval/2, and tells OnChange of each day that
// gained some. Marks that fail to write are kept for the next Flush.
func (s *Store) Flush(interval time.Duration, hurry func() bool) error {
	s.mu.Lock()
	pending := s.pending
	s.pending = map[dayKey][]uint16{}
	s.mu.Unlock()
	keys := slices.Collect(maps.Keys(pending))
	chunk := make([]Day, 0, flushChunk) // days are built a chunk at a time: 220 bytes each
	done, err := pacing.Write(len(keys), pacing.Options{Chunk: flushChunk, Deadline: time.Now().Add(interval / 2), Hurry: hurry},
		func(lo, hi int) error {
			chunk = chunk[:0]
			for _, k := range keys[lo:hi] {
				d := Day{Org: k.org, Day: time.Unix(k.day, 0).UTC()}
				for _, m := range pending[k] {
					d.Bits.Set(int(m))
				}
				chunk = append(chunk, d)
			}
			return s.writeDays(chunk)
		})
	if err != nil {
		s.requeue(keys[done:], pending)
	}
	return err
}

// writeDays merges days into their stored ones in one transaction, then
// tells OnChange of those that gained minutes.
func (s *Store) writeDays(days []Day) error {
	var changed []Day
	err := s.write(func(txn *badger.Txn) error {
		changed = changed[:0]
		for _, d := range days {
			if s.opts.Holds != nil && !s.opts.Holds(d.Org) {
				continue // deleted since it was marked
			}
			grew, err := s.merge(txn, &d)
			if err != nil {
				return err
			}
			if grew {
				changed = append(changed, d)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range changed {
		if s.opts.OnChange != nil {
			s.opts.OnChange(d)
		}
	}
	return nil
}

// flushChunk is how many days one transaction of a flush writes.
const flushChunk = 1000

// requeue puts back the marks of days not written, with any made since.
func (s *Store) requeue(keys []dayKey, from map[dayKey][]uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.pending[k] = append(from[k], s.pending[k]...)
	}
}

// merge ORs d into its stored day, leaving d holding the merged minutes;
// it reports whether the stored day gained any.
func (s *Store) merge(txn *badger.Txn, d *Day) (bool, error) {
	k := key(d.Day, d.Org)
	var held Bits
	item, err := txn.Get(k)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return false, err
	default:
		if err := item.Value(func(v []byte) error { return Decode(v, &held) }); err != nil {
			return false, fmt.Errorf("%s: %w", k, err)
		}
	}
	if !held.or(&d.Bits) {
		return false, nil
	}
	d.Bits = held
	ttl := d.Day.Add(24*time.Hour + s.opts.Retention).Sub(s.opts.Now())
	if ttl <= 0 {
		return false, nil // past retention: not kept
	}
	return true, txn.SetEntry(badger.NewEntry(k, Encode(&held)).WithTTL(ttl))
}

func (s *Store) write(f func(*badger.Txn) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.opts.CheckDisk != nil {
		if err := s.opts.CheckDisk(); err != nil {
			return err
		}
	}
	if err := s.opts.DB.Update(f); err != nil {
		return fmt.Errorf("write activity history: %w", err)
	}
	return nil
}

// Run flushes every interval (sooner when many days wait) until ctx
// ends, and once more then, unpaced.
func (s *Store) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	hurry := func() bool { return ctx.Err() != nil }
	for {
		select {
		case <-ctx.Done():
			if err := s.Flush(interval, hurry); err != nil {
				s.log.Error("activity history not written at stop", "err", err)
			}
			return
		case <-t.C:
		case <-s.full:
		}
		if err := s.Flush(interval, hurry); err != nil {
			s.log.Error("activity history not written; retrying at the next flush", "err", err)
		}
	}
}

// Merge applies days another replica sent.
func (s *Store) Merge(days []Day) error {
	return s.write(func(txn *badger.Txn) error {
		for _, d := range days {
			if s.opts.Holds != nil && !s.opts.Holds(d.Org) {
				continue
			}
			if _, err := s.merge(txn, &d); err != nil {
				return err
			}
		}
		return nil
	})
}

// Read calls each for every org's day, in org order, with the minutes
// marked since the last flush too.
func (s *Store) Read(day time.Time, each func(Day) error) error {
	day = midnight(day)
	byOrg := map[string]*Bits{}
	s.mu.Lock()
	for k, ms := range s.pending {
		if k.day == day.Unix() {
			b := new(Bits)
			for _, m := range ms {
				b.Set(int(m))
			}
			byOrg[k.org] = b
		}
	}
	s.mu.Unlock()
	p := key(day, "")
	err := s.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			org := string(bytes.TrimPrefix(it.Item().Key(), p))
			b := byOrg[org]
			if b == nil {
				b = new(Bits)
				byOrg[org] = b
			}
			if err := it.Item().Value(func(v []byte) error { return Decode(v, b) }); err != nil {
				return fmt.Errorf("activity day of org %q: %w", org, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, org := range slices.Sorted(maps.Keys(byOrg)) {
		if err := each(Day{Org: org, Day: day, Bits: *byOrg[org]}); err != nil {
			return err
		}
	}
	return nil
}

// Export calls each with every day held, for a snapshot.
func (s *Store) Export(each func([]Day) error) error {
	var batch []Day
	err := s.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rest := it.Item().Key()[len(prefix):]
			dayText, org, ok := bytes.Cut(rest, []byte("/"))
			day, err := time.Parse("20060102", string(dayText))
			if !ok || err != nil {
				continue
			}
			d := Day{Org: string(org), Day: day}
			if err := it.Item().Value(func(v []byte) error { return Decode(v, &d.Bits) }); err != nil {
				return err
			}
			if batch = append(batch, d); len(batch) == 1000 {
				if err := each(batch); err != nil {
					return err
				}
				batch = nil
			}
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = each(batch)
	}
	return err
}

// Delete forgets org's days.
func (s *Store) Delete(org string) error {
	now := s.opts.Now()
	s.mu.Lock()
	for k := range s.pending {
		if k.org == org {
			delete(s.pending, k)
		}
	}
	s.mu.Unlock()
	return s.write(func(txn *badger.Txn) error {
		for d := midnight(now); !d.Before(midnight(now.Add(-s.opts.Retention - 24*time.Hour))); d = d.Add(-24 * time.Hour) {
			if err := txn.Delete(key(d, org)); err != nil {
				return err
			}
		}
		return nil
	})
}
