// Package activity keeps every org's activity and dormancy: in memory for
// answers, in Badger for restarts. Activity is coalesced and written at most
// once per org per flush interval; dormancy happens at each org's exact
// instant, and anyone watching an org hears of every change at once.
package activity

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/internal/watch"
	"github.com/orgscaler/orgscaler/storage"
)

// Options configure a Store.
type Options struct {
	// DB is the database the store keeps its orgs in (its spaces:
	// storage.Orgs, Tombs, OrgCount, Alive); whoever opened it closes it,
	// after the store.
	DB *storage.DB
	// Dir, when DB is nil, is where the store opens a database of its own
	// (storage.Open), which its Close closes: for tests and embedders that
	// keep nothing else.
	Dir string
	// IdleWindow is how long an org stays active after its last activity,
	// unless the org has its own window.
	IdleWindow time.Duration
	// FlushInterval bounds how often one org's activity is written.
	FlushInterval time.Duration
	Logger        *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Registerer, when set, gets the store's metrics.
	Registerer prometheus.Registerer
	// OnChange, when set, is told of every change made here (activity,
	// new orgs, settings, deletes; not those Apply brings from other
	// replicas), outside the store's locks, for replication. It must not
	// block.
	OnChange func(Change)
	// Replica names this store's replica in the stamps of its changes
	// (settings, deletes), for last-writer-wins across replicas.
	Replica string
	// MaxClockSkew, when set, bounds how far ahead of this store's clock a
	// stamp it observes (from another replica, or from its own disk) may
	// move its hybrid logical clock.
	MaxClockSkew time.Duration
	// MaxOrgs caps the orgs activity and KEDA's triggers may create (0: no
	// cap), so ever-new ids cannot grow memory without bound. Orgs named
	// by an admin are always created.
	MaxOrgs int
	// UnseenDormant makes an org a trigger names before any activity,
	// import or admin change has arrive dormant (at zero until its first
	// activity), instead of active for its idle window.
	UnseenDormant bool
}

const shardCount = 64

// Store holds every org. Its methods are safe for concurrent use.
type Store struct {
	opts    Options
	log     *slog.Logger
	storage *storage.DB
	db      *badger.DB // storage's
	ownDB   bool       // opened in Open from Options.Dir: Close closes it
	seed    maphash.Seed
	shards  [shardCount]shard
	sched   *scheduler
	metrics *metrics
	clock   *hlc.Clock
	// lastAlive is when the store last ran before this start.
	lastAlive time.Time

	count atomic.Int64 // orgs held

	writeMu sync.Mutex // orders writes so an older snapshot never lands after a newer one

	urgentMu sync.Mutex
	urgent   map[string]struct{}
	urgentC  chan struct{}

	subsMu sync.Mutex // orders Subscribe calls
	subs   atomic.Pointer[[]Subscriber]

	// syncHook, set by tests, runs before every fsync.
	syncHook atomic.Pointer[func()]

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type shard struct {
	mu    sync.Mutex
	orgs  map[string]*entry
	dirty []string
	// orphans are the watchers of deleted orgs, handed to the org when a
	// trigger names it again; deleted remembers recent deletes, for the log.
	orphans map[string]*watch.List
	deleted map[string]struct{}
	// tombs are the stamps of deletes of orgs not held: what a replica
	// says of the org no later than that is ignored (kept tombTTL).
	tombs map[string]hlc.Stamp
}

type entry struct {
	rec       record
	dirty     bool
	by        wakeBy      // what the last activity or wake was
	scheduled stamp       // the live scheduler entry, zero if none
	watchers  *watch.List // nil without watchers: most orgs have none
}

var keyPrefix = []byte(storage.Orgs.Prefix)

// Open loads every org from opts.DB (or a database of its own in
// opts.Dir) and starts the flusher and the dormancy timer. A database
// that cannot be read is an error: the store never starts empty over it.
func Open(opts Options) (*Store, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	db, own := opts.DB, false
	if db == nil {
		var err error
		if db, err = storage.Open(storage.Options{Dir: opts.Dir, Logger: opts.Logger}); err != nil {
			return nil, err
		}
		own = true
	}
	s, err := start(opts, db)
	if err != nil && own {
		_ = db.Close()
	}
	if s != nil {
		s.ownDB = own
	}
	return s, err
}

func (opts Options) check() error {
	if opts.IdleWindow <= 0 {
		return fmt.Errorf("idle window must be > 0, got %s", opts.IdleWindow)
	}
	if opts.FlushInterval <= 0 {
		return fmt.Errorf("flush interval must be > 0, got %s", opts.FlushInterval)
	}
	return nil
}

func (opts Options) logger() *slog.Logger {
	if opts.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return opts.Logger.With("component", "activity")
}

// start loads db and starts the store's goroutines.
func start(opts Options, db *storage.DB) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		opts:    opts,
		storage: db,
		db:      db.Badger(),
		log:     opts.logger(),
		seed:    maphash.MakeSeed(),
		urgent:  make(map[string]struct{}),
		urgentC: make(chan struct{}, 1),
		done:    make(chan struct{}),
		metrics: newMetrics(opts.Registerer),
		clock:   hlc.New(opts.Replica, opts.Now),
	}
	s.clock.HoldAhead(opts.MaxClockSkew)
	for i := range s.shards {
		s.shards[i].orgs = make(map[string]*entry)
	}
	s.sched = newScheduler(opts.Now, s.expire)
	if err := s.load(); err != nil {
		return nil, err
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.sched.run(s.done) }()
	go func() { defer s.wg.Done(); s.flushLoop() }()
	return s, nil
}

func (s *Store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%shardCount]
}

func stateOf(r record) string {
	if r.DormantSince.IsZero() {
		return "active"
	}
	return "dormant"
}

func (s *Store) snapshot(id string, e *entry) Org { return s.orgOf(id, e.rec, e.by) }

// orgOf is the Org of a record copied out of its entry, so the
// conversions can run outside the shard's lock.
func (s *Store) orgOf(id string, rec record, by wakeBy) Org {
	return Org{
		ID:                   id,
		LastActivity:         rec.LastActivity.Time(),
		FirstSeen:            rec.FirstSeen.Time(),
		DormantSince:         rec.DormantSince.Time(),
		ScaleToZeroAllowed:   rec.ScaleToZero,
		IdleWindow:           s.window(rec),
		IdleWindowOverridden: rec.IdleWindow > 0,
		WarmSchedule:         rec.Schedule,
		PoolWeight:           rec.poolWeight(),
		WokeBy:               by.reason(),
	}
}

// markDirty queues e for the next flush. Caller holds sh.mu.
func (s *Store) markDirty(sh *shard, id string, e *entry) {
	if !e.dirty {
		e.dirty = true
		sh.dirty = append(sh.dirty, id)
	}
}

// markUrgent writes id soon instead of at the next flush: transitions and
// first sightings are rare and must survive a crash. Caller holds sh.mu.
func (s *Store) markUrgent(sh *shard, id string, e *entry) {
	s.markDirty(sh, id, e)
	s.urgentMu.Lock()
	s.urgent[id] = struct{}{}
	s.urgentMu.Unlock()
	select {
	case s.urgentC <- struct{}{}:
	default:
	}
}

// schedule makes sure the scheduler looks at id no later than at. Caller
// holds the shard lock.
func (s *Store) schedule(id string, e *entry, at time.Time) {
	if st := stampOf(at); e.scheduled.IsZero() || st < e.scheduled {
		e.scheduled = st
		s.sched.add(id, at)
	}
}

func (e *entry) notify() {
	if e.watchers != nil {
		e.watchers.Notify()
	}
}

// getOrCreate returns the entry for id, creating an active org first seen
// now. Caller holds sh.mu.
func (s *Store) getOrCreate(sh *shard, id string, now time.Time) (*entry, bool) {
	return s.getOrCreateAt(sh, id, now, now)
}

// getOrCreateAt is getOrCreate for activity at at (no later than now): a
// new org's last activity is at.
func (s *Store) getOrCreateAt(sh *shard, id string, at, now time.Time) (*entry, bool) {
	if e, ok := sh.orgs[id]; ok {
		return e, false
	}
	// After a delete the org comes back as new, later than the delete
	// even if this clock is behind the replica that deleted it.
	created := max(stampOf(at), stamp(sh.tombs[id])+1)
	e := s.insert(sh, id, record{LastActivity: created, FirstSeen: stampOf(now), ScaleToZero: true})
	s.metrics.moved("", "active")
	s.markUrgent(sh, id, e)
	s.schedule(id, e, e.rec.LastActivity.Add(s.window(e.rec)))
	return e, true
}

// insert puts a new org in sh, handing it the watchers left by its delete,
// if any: the one place an org comes into being, locally or from another
// replica. Caller holds sh.mu.
func (s *Store) insert(sh *shard, id string, rec record) *entry {
	e := &entry{rec: rec}
	sh.orgs[id] = e
	if w := sh.orphans[id]; w != nil {
		e.watchers = w
		delete(sh.orphans, id)
	}
	if _, ok := sh.deleted[id]; ok {
		delete(sh.deleted, id)
		s.log.Info("org named again after it was deleted: recreated as new", "org", id)
	}
	s.count.Add(1)
	return e
}

// Close stops the timers, writes everything not yet written, and closes the
// database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.wg.Wait()
		ferr := s.flush(false)
		s.markAlive()
		var cerr error
		if s.ownDB {
			cerr = s.storage.Close()
		}
		s.closeErr = errors.Join(ferr, cerr)
	})
	return s.closeErr
}
