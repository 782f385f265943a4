// Package idletimes keeps each org's idle-time histogram, and the fleet's
// (the young orgs' idle times the learned keep-alive starts a new org
// from), in the store's Badger database. Each replica counts the idle
// times of the activity it accepted; the counts are kept per replica, and
// each replica's only grow, so merging another replica's by the larger
// count per bin is exact whatever the order or redelivery, and the
// histogram a policy reads is the sum over replicas.
package idletimes

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/orgscaler/orgscaler/keepalive"
	"github.com/orgscaler/orgscaler/storage"
)

// Options configure a Store.
type Options struct {
	// DB is the database the histograms live in, under "idle/".
	DB *badger.DB
	// Replica names this replica's counts.
	Replica string
	// MaxCached bounds the orgs whose histograms are held in memory (those
	// a keep-alive policy reads); others are read from disk. Default 10000.
	MaxCached int
	// OnChange, when set, is told of this replica's counts for an org (or
	// the fleet) each time they grow, for replication. It must not block.
	OnChange func(Counts)
	// OnUpdate, when set, is told of every org whose histogram changed, so
	// its answers are looked at again (a plan may now pre-warm). It must
	// not block.
	OnUpdate func(org string)
	// CheckDisk, when set, is asked before every write; an error skips it.
	CheckDisk func() error
	// Holds, when set, says whether the store holds org: another replica's
	// counts for an org deleted since are dropped, not kept for a name
	// nobody uses.
	Holds  func(org string) bool
	Logger *slog.Logger
}

// DefaultMaxCached is the default bound on histograms held in memory:
// about 1 KB each.
const DefaultMaxCached = 10_000

// Counts is one replica's counts for one org, or for the fleet (Org
// empty): what replicas exchange.
type Counts struct {
	Org, Replica string
	History      keepalive.History // only Bins and Over
}

// Store keeps the histograms. Its methods are safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger

	// writeMu orders the reads and writes of the database, so a sum read
	// from it is never a write behind; mu guards only memory, so the
	// answers that read a cached histogram never wait on the disk.
	writeMu sync.Mutex
	mu      sync.Mutex
	cached  map[string]*entry             // org -> its sum over replicas, and plans made from it
	fleet   map[string]*keepalive.History // replica -> its fleet counts
	sum     keepalive.History             // the fleet's, over replicas
	// fleetGen counts the changes of sum: a plan made before the last one
	// is made again.
	fleetGen uint64
	// loading holds the orgs Plan asked about that are not cached yet, for
	// the one background loader (running while loaderOn).
	loading  map[string]struct{}
	loaderOn bool
}

// entry is a cached org: its histogram, and the plans made from it (and
// the fleet's at fleetGen), by policy and cold start.
type entry struct {
	sum   keepalive.History
	plans map[string]planned
}

type planned struct {
	plan     keepalive.Plan
	fleetGen uint64
}

// Open loads the fleet's counts from o.DB.
func Open(o Options) (*Store, error) {
	if o.MaxCached <= 0 {
		o.MaxCached = DefaultMaxCached
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: o, log: o.Logger.With("component", "idletimes"),
		cached: make(map[string]*entry), fleet: make(map[string]*keepalive.History)}
	err := o.DB.View(func(txn *badger.Txn) error {
		return scan(txn, fleetPrefix, func(key []byte, h keepalive.History) {
			r := string(key[len(fleetPrefix):])
			s.fleet[r] = &h
			add(&s.sum, &h)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load the fleet's idle times: %w", err)
	}
	return s, nil
}

var (
	orgPrefix   = []byte(storage.IdleOrgs.Prefix)
	fleetPrefix = []byte(storage.IdleFleet.Prefix)
)

// orgKey is org's counts by replica r; with r empty, the prefix of all of them.
func orgKey(org, r string) []byte {
	k := append(append([]byte{}, orgPrefix...), org...)
	return append(append(k, 0), r...)
}

func fleetKey(r string) []byte { return append(append([]byte{}, fleetPrefix...), r...) }

// Observe counts one idle time of org, seen by this replica, if it is at
// least keepalive.MinIdle: into the org's histogram and, while the org is
// young, the fleet's.
func (s *Store) Observe(org string, idle time.Duration) error {
	if idle < keepalive.MinIdle {
		return nil
	}
	s.writeMu.Lock()
	changes, err := s.observe(org, idle)
	s.writeMu.Unlock()
	if err != nil {
		return err
	}
	for _, c := range changes {
		s.changed(c)
	}
	s.updated(org)
	return nil
}

// observe is Observe under writeMu: one transaction reads the org's counts
// (its sum, and this replica's own among them) and writes them grown,
// then memory follows. It returns the counts that grew.
func (s *Store) observe(org string, idle time.Duration) ([]Counts, error) {
	if err := s.checkDisk(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	fleet := s.fleet[s.opts.Replica]
	s.mu.Unlock()
	var nextFleet keepalive.History
	if fleet != nil {
		nextFleet = *fleet
	}
	var sum, own keepalive.History
	ownKey := orgKey(org, s.opts.Replica)
	learned := false
	err := s.opts.DB.Update(func(txn *badger.Txn) error {
		if err := scan(txn, orgKey(org, ""), func(key []byte, h keepalive.History) {
			add(&sum, &h)
			if bytes.Equal(key, ownKey) {
				own = h
			}
		}); err != nil {
			return err
		}
		sum.Add(idle)
		own.Add(idle)
		before := nextFleet
		keepalive.Learned{Fleet: &nextFleet}.Learn(&sum, idle)
		if learned = nextFleet != before; learned {
			if err := txn.Set(fleetKey(s.opts.Replica), marshal(&nextFleet)); err != nil {
				return err
			}
		}
		return txn.Set(ownKey, marshal(&own))
	})
	if err != nil {
		return nil, fmt.Errorf("write idle times of org %q: %w", org, err)
	}
	changes := []Counts{{Org: org, Replica: s.opts.Replica, History: own}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.cached[org]; ok {
		e.sum, e.plans = sum, nil
	}
	if learned {
		s.sum.Add(idle)
		s.fleetGen++
		s.fleet[s.opts.Replica] = &nextFleet
		changes = append(changes, Counts{Replica: s.opts.Replica, History: nextFleet})
	}
	return changes, nil
}

// History returns org's histogram (summed over replicas) and the fleet's,
// as copies, and keeps org's in memory for the next call.
func (s *Store) History(org string) (own, fleet keepalive.History, err error) {
	e, err := s.entry(org)
	if err != nil {
		return own, fleet, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.sum, s.sum, nil
}

// Plan is the plan compute makes from org's histogram and the fleet's,
// made again only when either changed since: KEDA asks about a workload on
// every poll and stream wake, and its idle times change at most once per
// activity. key names what else the plan depends on (policy, cold start).
//
// An org not in memory is read from disk in the background, never on the
// caller's path (a read waits for writeMu, behind writes and their
// syncs): meanwhile the plan is the one a new org gets, from the fleet's
// prior alone, and the org's watchers are told (OnUpdate) once it is read.
func (s *Store) Plan(org, key string, compute func(own, fleet *keepalive.History) keepalive.Plan) (keepalive.Plan, error) {
	s.mu.Lock()
	e, ok := s.cached[org]
	if !ok {
		fleet := s.sum
		s.loadLater(org)
		s.mu.Unlock()
		var none keepalive.History
		return compute(&none, &fleet), nil
	}
	if p, ok := e.plans[key]; ok && p.fleetGen == s.fleetGen {
		s.mu.Unlock()
		return p.plan, nil
	}
	own, fleet, gen := e.sum, s.sum, s.fleetGen
	s.mu.Unlock()
	plan := compute(&own, &fleet) // outside the lock: a few thousand bin operations
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached[org] == e && e.sum == own && s.fleetGen == gen { // nothing changed meanwhile
		if e.plans == nil {
			e.plans = map[string]planned{}
		}
		e.plans[key] = planned{plan, gen}
	}
	return plan, nil
}

// loadLater queues org to be read into the cache by the one background
// loader, starting it if it is idle. Caller holds mu.
func (s *Store) loadLater(org string) {
	if s.loading == nil {
		s.loading = map[string]struct{}{}
	}
	if _, queued := s.loading[org]; queued {
		return
	}
	s.loading[org] = struct{}{}
	if !s.loaderOn {
		s.loaderOn = true
		go s.loader()
	}
}

// loader reads queued orgs into the cache, one at a time, and tells each
// org's watchers; it stops when the queue is empty. An org that cannot be
// read is dropped from the queue: the next answer queues it again.
func (s *Store) loader() {
	for {
		s.mu.Lock()
		var org string
		for o := range s.loading {
			org = o
			break
		}
		if org == "" {
			s.loaderOn = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		_, err := s.entry(org)
		s.mu.Lock()
		delete(s.loading, org)
		s.mu.Unlock()
		if err == nil {
			s.updated(org)
		}
	}
}

// entry is org's cache entry, read from disk when it is not cached. A
// cached org takes only mu: the answers KEDA waits for never wait on the
// disk. An org not cached is read once, under writeMu, so no write lands
// between the read and the cache.
func (s *Store) entry(org string) (*entry, error) {
	s.mu.Lock()
	e, ok := s.cached[org]
	s.mu.Unlock()
	if ok {
		return e, nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	h, err := s.load(org)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.cached[org]; ok { // another call read it first
		return e, nil
	}
	for k := range s.cached {
		if len(s.cached) < s.opts.MaxCached {
			break
		}
		delete(s.cached, k) // any one: it is read from disk again when asked
	}
	e = &entry{sum: *h}
	s.cached[org] = e
	return e, nil
}

// Merge applies another replica's counts: each bin takes the larger of the
// held and the given count, so order and redelivery change nothing.
func (s *Store) Merge(c Counts) error {
	if c.Replica == "" {
		return errors.New("idle times without a replica")
	}
	if c.Org != "" && s.opts.Holds != nil && !s.opts.Holds(c.Org) {
		return nil
	}
	s.writeMu.Lock()
	grew, err := s.merge(c)
	s.writeMu.Unlock()
	if grew && c.Org != "" {
		s.updated(c.Org)
	}
	return err
}

// merge is Merge under writeMu, saying whether the counts grew.
func (s *Store) merge(c Counts) (bool, error) {
	if err := s.checkDisk(); err != nil {
		return false, err
	}
	key := fleetKey(c.Replica)
	if c.Org != "" {
		key = orgKey(c.Org, c.Replica)
	}
	held, err := s.read(key)
	if err != nil {
		return false, err
	}
	merged, grew := held, false
	for i, n := range c.History.Bins {
		if n > merged.Bins[i] {
			merged.Bins[i], grew = n, true
		}
	}
	if c.History.Over > merged.Over {
		merged.Over, grew = c.History.Over, true
	}
	if !grew {
		return false, nil
	}
	if err := s.opts.DB.Update(func(txn *badger.Txn) error { return txn.Set(key, marshal(&merged)) }); err != nil {
		return false, fmt.Errorf("write idle times from replica %q: %w", c.Replica, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Org == "" {
		s.fleet[c.Replica] = &merged
		grow(&s.sum, &held, &merged)
		s.fleetGen++
	} else if e, ok := s.cached[c.Org]; ok {
		grow(&e.sum, &held, &merged)
		e.plans = nil
	}
	return true, nil
}

// Activity counts the idle time an org's activity at at ends (prev: its
// last activity before, zero for a new org), as activity.Subscriber. A
// failure loses one idle time, not the activity: it is logged.
func (s *Store) Activity(org string, prev, at time.Time) {
	if prev.IsZero() {
		return
	}
	if err := s.Observe(org, at.Sub(prev)); err != nil {
		s.log.Warn("idle time not counted", "org", org, "err", err)
	}
}

// Forget is Delete for a deleted org, as activity.Subscriber: a failure is
// logged, and the counts go when the org's name is used again.
func (s *Store) Forget(org string) {
	if err := s.Delete(org); err != nil {
		s.log.Warn("idle times of a deleted org not removed", "org", org, "err", err)
	}
}

// Delete forgets org's idle times, on every replica's count.
func (s *Store) Delete(org string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	delete(s.cached, org)
	s.mu.Unlock()
	err := s.opts.DB.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: orgKey(org, "")})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete idle times of org %q: %w", org, err)
	}
	return nil
}

// Export hands every count held, this replica's and others', a chunk at
// a time, for a snapshot.
func (s *Store) Export(send func([]Counts) error) error {
	var batch []Counts
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := send(batch)
		batch = nil
		return err
	}
	var sendErr error
	each := func(c Counts) {
		if sendErr != nil {
			return
		}
		if batch = append(batch, c); len(batch) == exportChunk {
			sendErr = flush()
		}
	}
	err := s.opts.DB.View(func(txn *badger.Txn) error {
		if err := scan(txn, orgPrefix, func(key []byte, h keepalive.History) {
			org, r, _ := bytes.Cut(key[len(orgPrefix):], []byte{0})
			each(Counts{Org: string(org), Replica: string(r), History: h})
		}); err != nil {
			return err
		}
		return scan(txn, fleetPrefix, func(key []byte, h keepalive.History) {
			each(Counts{Replica: string(key[len(fleetPrefix):]), History: h})
		})
	})
	if err != nil {
		return err
	}
	if sendErr != nil {
		return sendErr
	}
	return flush()
}

// exportChunk is how many counts Export hands over at a time.
const exportChunk = 1000

// load reads org's counts from every replica and sums them.
func (s *Store) load(org string) (*keepalive.History, error) {
	var sum keepalive.History
	err := s.opts.DB.View(func(txn *badger.Txn) error {
		return scan(txn, orgKey(org, ""), func(_ []byte, h keepalive.History) { add(&sum, &h) })
	})
	if err != nil {
		return nil, fmt.Errorf("read idle times of org %q: %w", org, err)
	}
	return &sum, nil
}

// read is the counts under key; none when it is absent.
func (s *Store) read(key []byte) (keepalive.History, error) {
	var h keepalive.History
	err := s.opts.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return unmarshal(v, &h) })
	})
	if err != nil {
		return h, fmt.Errorf("read idle times %q: %w", key, err)
	}
	return h, nil
}

func scan(txn *badger.Txn, prefix []byte, each func(key []byte, h keepalive.History)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var h keepalive.History
		item := it.Item()
		if err := item.Value(func(v []byte) error { return unmarshal(v, &h) }); err != nil {
			return fmt.Errorf("idle times %q: %w", item.Key(), err)
		}
		each(item.KeyCopy(nil), h)
	}
	return nil
}

func (s *Store) checkDisk() error {
	if s.opts.CheckDisk == nil {
		return nil
	}
	return s.opts.CheckDisk()
}

func (s *Store) changed(c Counts) {
	if s.opts.OnChange != nil {
		s.opts.OnChange(c)
	}
}

func (s *Store) updated(org string) {
	if s.opts.OnUpdate != nil {
		s.opts.OnUpdate(org)
	}
}
