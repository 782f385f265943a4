// Package pools keeps the GPU pools' definitions (how many GPUs each
// shares, how fast its members may wake, how long a share waits before it
// comes down) on disk, last-writer-wins by a hybrid logical clock's
// stamps, so every replica that has seen the same sets and deletes keeps
// the same pools. How a pool's GPUs are shared is package pool's rule.
package pools

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/orgscaler/orgscaler/hlc"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/storage"
)

// NotFoundError is a pool that is not defined.
type NotFoundError struct{ Name string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("pool %q does not exist: create it with scalerctl pool set %s --gpus N", e.Name, e.Name)
}

// LimitError is a new pool past MaxPools.
type LimitError struct{ Name string }

func (e *LimitError) Error() string {
	return fmt.Sprintf("pool %q not created: the scaler keeps at most %d pools; delete one first", e.Name, MaxPools)
}

// Options configure a Store.
type Options struct {
	DB *badger.DB
	// Replica names this replica in its stamps (--replica-id).
	Replica string
	Now     func() time.Time
	// MaxClockSkew bounds how far another replica's stamps move this
	// replica's clock ahead of its own.
	MaxClockSkew time.Duration
	// CheckDisk, when set, refuses a write on a nearly full disk.
	CheckDisk func() error
	// OnChange is told of every set and delete made here, after it is on
	// disk (replication publishes it).
	OnChange func(Pool)
	Logger   *slog.Logger
}

// Store holds every pool's definition, and the tombstones of those
// deleted recently.
type Store struct {
	o     Options
	log   *slog.Logger
	clock *hlc.Clock

	mu   sync.Mutex // held across a write: sets are rare
	defs map[string]Pool
	// view is a copy of defs, published after each write: KEDA's answers
	// look pools up on every call, and never wait on a write's disk.
	view atomic.Pointer[map[string]Pool]
}

// Open reads every pool from db.
func Open(o Options) (*Store, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{o: o, log: o.Logger.With("component", "pools"), clock: hlc.New(o.Replica, o.Now), defs: map[string]Pool{}}
	s.clock.HoldAhead(o.MaxClockSkew)
	err := o.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(storage.Pools.Prefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var m pb.PoolDef
			if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, &m) }); err != nil {
				return fmt.Errorf("read pool %s: %w", it.Item().Key(), err)
			}
			p, ok := Decode(&m)
			if !ok {
				return fmt.Errorf("read pool %s: not a valid definition", it.Item().Key())
			}
			s.defs[p.Name] = p
			s.clock.Observe(p.At)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.publish()
	return s, nil
}

// publish makes defs what readers see; s.mu is held (or s is not shared
// yet).
func (s *Store) publish() {
	view := maps.Clone(s.defs)
	s.view.Store(&view)
}

// Get returns the pool called name, if it is defined.
func (s *Store) Get(name string) (Pool, bool) {
	p, ok := (*s.view.Load())[name]
	return p, ok && !p.Deleted
}

// List returns every defined pool, by name.
func (s *Store) List() []Pool {
	defs := *s.view.Load()
	var out []Pool
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		if p := defs[name]; !p.Deleted {
			out = append(out, p)
		}
	}
	return out
}

// Set creates the pool name or changes the settings u sets, and returns it
// once it is on disk.
func (s *Store) Set(name string, u Update) (Pool, error) {
	if !ValidName(name) {
		return Pool{}, &FieldError{"pool", fmt.Sprintf("%q", name), NameExpected}
	}
	s.mu.Lock()
	p, ok := s.defs[name]
	if !ok || p.Deleted {
		if u.GPUs == nil {
			s.mu.Unlock()
			return Pool{}, &FieldError{"gpus", "not set", "the GPUs a new pool shares (--gpus)"}
		}
		if s.live() >= MaxPools {
			s.mu.Unlock()
			return Pool{}, &LimitError{name}
		}
		p = Pool{Name: name, Stabilization: DefaultStabilization}
	}
	p, err := u.apply(p)
	if err == nil {
		p.At, p.Deleted = s.clock.Now(), false
		err = s.write(p)
	}
	s.mu.Unlock()
	if err != nil {
		return Pool{}, err
	}
	s.changed(p)
	return p, nil
}

// Delete deletes the pool name and returns it as it was.
func (s *Store) Delete(name string) (Pool, error) {
	s.mu.Lock()
	p, ok := s.defs[name]
	if !ok || p.Deleted {
		s.mu.Unlock()
		return Pool{}, &NotFoundError{name}
	}
	tomb := Pool{Name: name, At: s.clock.Now(), Deleted: true}
	err := s.write(tomb)
	s.mu.Unlock()
	if err != nil {
		return Pool{}, err
	}
	s.changed(tomb)
	return p, nil
}

func (s *Store) changed(p Pool) {
	s.log.Info("pool changed", "pool", p.Name, "deleted", p.Deleted, "gpus", p.GPUs, "wake_rate", p.WakeRate(), "stabilization", p.Stabilization)
	if s.o.OnChange != nil {
		s.o.OnChange(p)
	}
}

// live counts the pools not deleted; s.mu is held.
func (s *Store) live() int {
	n := 0
	for _, p := range s.defs {
		if !p.Deleted {
			n++
		}
	}
	return n
}

// write puts p on disk and in memory, and drops tombstones past their
// time; s.mu is held.
func (s *Store) write(p Pool) error {
	if s.o.CheckDisk != nil {
		if err := s.o.CheckDisk(); err != nil {
			return err
		}
	}
	old := time.Duration(s.o.Now().UnixNano()) - tombstoneTTL
	err := s.o.DB.Update(func(txn *badger.Txn) error {
		b, err := proto.Marshal(Encode(p))
		if err != nil {
			return err
		}
		if err := txn.Set(storage.Pools.Key(p.Name), b); err != nil {
			return err
		}
		for name, q := range s.defs {
			if q.Deleted && name != p.Name && time.Duration(q.At) < old {
				if err := txn.Delete(storage.Pools.Key(name)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write pool %s: %w", p.Name, err)
	}
	for name, q := range s.defs {
		if q.Deleted && name != p.Name && time.Duration(q.At) < old {
			delete(s.defs, name)
		}
	}
	s.defs[p.Name] = p
	s.publish()
	return nil
}

// Merge keeps, of each definition from another replica (or a backup),
// the later of it and this replica's.
func (s *Store) Merge(ps []Pool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range ps {
		if !p.valid() {
			continue
		}
		s.clock.Observe(p.At)
		if q, ok := s.defs[p.Name]; ok && !p.newer(q) {
			continue
		}
		if !p.Deleted && s.live() >= MaxPools {
			if q, ok := s.defs[p.Name]; !ok || q.Deleted {
				s.log.Warn("pool from another replica not kept: this replica holds the most pools it keeps", "pool", p.Name, "max", MaxPools)
				continue
			}
		}
		if err := s.write(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Export sends every definition and tombstone, for a peer's snapshot or
// a backup.
func (s *Store) Export(send func([]Pool) error) error {
	all := slices.Collect(maps.Values(*s.view.Load()))
	if len(all) == 0 {
		return nil
	}
	return send(all)
}

// Digest hashes every defined pool (name, settings and stamp), in name
// order; ok is false when there is none, so a scaler without pools
// digests its orgs alone, as before pools.
func (s *Store) Digest() (sum [32]byte, ok bool) {
	pools := s.List()
	if len(pools) == 0 {
		return sum, false
	}
	h := sha256.New()
	for _, p := range pools {
		h.Write([]byte(p.Name))
		k := p.key()
		for _, v := range append(k[1:], int64(p.At)) {
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(v)))
		}
	}
	h.Sum(sum[:0])
	return sum, true
}

// Encode is p on the wire and on disk.
func Encode(p Pool) *pb.PoolDef {
	return &pb.PoolDef{Name: p.Name, Gpus: p.GPUs, WakeCount: int32(p.WakeCount), WakePerNanos: int64(p.WakePer),
		StabilizationNanos: int64(p.Stabilization), At: int64(p.At), Deleted: p.Deleted}
}

// Decode reads a definition; false when it is not one this scaler could
// have written (damaged, or a newer scaler's).
func Decode(m *pb.PoolDef) (Pool, bool) {
	p := Pool{Name: m.GetName(), GPUs: m.GetGpus(), WakeCount: int(m.GetWakeCount()), WakePer: time.Duration(m.GetWakePerNanos()),
		Stabilization: time.Duration(m.GetStabilizationNanos()), At: hlc.Stamp(m.GetAt()), Deleted: m.GetDeleted()}
	if p.Deleted {
		p.GPUs, p.WakeCount, p.WakePer, p.Stabilization = 0, 0, 0, 0
	}
	return p, p.valid()
}
