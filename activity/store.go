// Package activity keeps every org's activity and dormancy: in memory for
// answers, in Badger for restarts. Activity is coalesced and written at most
// once per org per flush interval; dormancy happens at each org's exact
// instant, and anyone watching an org hears of every change at once.
package activity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/internal/watch"
	"github.com/orgscaler/orgscaler/schedule"
	"github.com/orgscaler/orgscaler/storage"
	"github.com/orgscaler/orgscaler/warm"
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
	// OnTransition, when set, is told of every org that woke or went
	// dormant, outside the store's locks. It must not block.
	OnTransition func(Transition)
	// Registerer, when set, gets the store's metrics.
	Registerer prometheus.Registerer
	// OnChange, when set, is told of every change made here (activity,
	// new orgs, settings, deletes; not those Apply brings from other
	// replicas), outside the store's locks, for replication. It must not
	// block.
	OnChange func(Change)
	// OnActivity, when set, is told of each activity recorded here (not
	// one Apply brings), with the org's last activity before it (zero for
	// a new org), outside the store's locks: the keep-alive policy learns
	// idle times from these, and the history keeps their minutes. It must
	// not block.
	OnActivity func(org string, prev, at time.Time)
	// OnDelete, when set, is told of each org deleted, here or by another
	// replica, once its record is gone from disk: what is kept beside the
	// org goes with it. It must not block.
	OnDelete func(org string)
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
}

// LimitError is activity for a new org refused because the store holds
// MaxOrgs orgs already.
type LimitError struct {
	Org string
	Max int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("org %q is new, and the scaler already holds its limit of %d orgs (--max-orgs): new orgs are refused until the limit is raised or orgs are deleted", e.Org, e.Max)
}

// Transition is an org waking or going dormant.
type Transition struct {
	Org          string
	Woke         bool       // false: went dormant
	Reason       WakeReason // why it woke
	LastActivity time.Time
	DormantSince time.Time // when it went dormant (for a wake: how long it slept)
	IdleWindow   time.Duration
}

// Org is a snapshot of one org.
type Org struct {
	ID                   string
	LastActivity         time.Time
	FirstSeen            time.Time
	DormantSince         time.Time // zero while active
	ScaleToZeroAllowed   bool
	IdleWindow           time.Duration // the window in force
	IdleWindowOverridden bool
	// WarmSchedule keeps the org warm inside its windows (nil: none).
	WarmSchedule *schedule.Schedule
	// WokeBy is the kind of the org's latest activity (activity or hint),
	// or admin when an admin change woke it since; it tells what turned a
	// workload active. Kept in memory only: "activity" after a restart.
	WokeBy WakeReason
}

// Dormant reports whether the org is dormant.
func (o Org) Dormant() bool { return !o.DormantSince.IsZero() }

// Warmth is the warm rule's verdict on the org at now (package warm):
// what activity's dormancy, KEDA's answers and the Knative actuator follow.
func (o Org) Warmth(now time.Time) warm.State {
	return warm.At(warm.Org{LastActivity: o.LastActivity, ScaleToZeroAllowed: o.ScaleToZeroAllowed,
		Window: o.IdleWindow, Schedule: o.WarmSchedule}, now)
}

// DormantAt is when an active org turns dormant if nothing happens; zero
// when dormant or never.
func (o Org) DormantAt(now time.Time) time.Time {
	if o.Dormant() {
		return time.Time{}
	}
	st := o.Warmth(now)
	if !st.Warm {
		return now // due: the store applies the rule at this instant
	}
	return st.Until
}

// wakeBy is a WakeReason in one byte: a million orgs keep one each.
type wakeBy uint8

const (
	byActivity wakeBy = iota
	byHint
	byAdmin
	bySchedule
)

func byOf(r WakeReason) wakeBy {
	switch r {
	case WakeHint:
		return byHint
	case WakeAdmin:
		return byAdmin
	case WakeSchedule:
		return bySchedule
	}
	return byActivity
}

func (b wakeBy) reason() WakeReason {
	return [...]WakeReason{byActivity: WakeActivity, byHint: WakeHint, byAdmin: WakeAdmin, bySchedule: WakeSchedule}[b]
}

// WakeReason says why a dormant org woke.
type WakeReason string

// Why an org wakes.
const (
	WakeActivity WakeReason = "activity"
	WakeHint     WakeReason = "hint"
	WakeAdmin    WakeReason = "admin"
	WakeSchedule WakeReason = "schedule" // a window of its warm schedule began
)

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
		return fmt.Errorf("load orgs from %s: %w", s.opts.Dir, err)
	}
	s.sched.addAll(schedule)
	s.count.Store(int64(n))
	s.metrics.orgs.WithLabelValues("active").Add(float64(n - dormant))
	s.metrics.orgs.WithLabelValues("dormant").Add(float64(dormant))
	s.log.Info("loaded orgs", "orgs", n, "dormant", dormant, "dir", s.opts.Dir)
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

func (s *Store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%shardCount]
}

func stateOf(r record) string {
	if r.DormantSince.IsZero() {
		return "active"
	}
	return "dormant"
}

func (s *Store) window(r record) time.Duration {
	if r.IdleWindow > 0 {
		return r.IdleWindow
	}
	return s.opts.IdleWindow
}

// settle applies the warm rule (package warm) to rec at now: a dormant
// org the rule finds warm wakes, an active one it finds cold is dormant
// from the instant it turned cold. It reports what changed, and when the
// rule must be applied again (zero: only an event can change it).
func (s *Store) settle(rec *record, now time.Time) (woke, slept bool, next time.Time) {
	st := warm.At(s.warmOrg(*rec), now)
	switch {
	case !rec.DormantSince.IsZero() && st.Warm:
		rec.DormantSince = 0
		woke = true
	case rec.DormantSince.IsZero() && !st.Warm:
		rec.DormantSince = stampOf(st.Since)
		slept = true
	}
	return woke, slept, st.Next
}

// warmOrg is what the warm rule reads of a record.
func (s *Store) warmOrg(r record) warm.Org {
	return warm.Org{LastActivity: r.LastActivity.Time(), ScaleToZeroAllowed: r.ScaleToZero, Window: s.window(r), Schedule: r.Schedule}
}

// rearm makes sure the scheduler applies the rule to id again at next,
// if ever. Caller holds the shard lock.
func (s *Store) rearm(id string, e *entry, next time.Time) {
	if !next.IsZero() {
		s.schedule(id, e, next)
	}
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
	if e, ok := sh.orgs[id]; ok {
		return e, false
	}
	// After a delete the org comes back as new, later than the delete
	// even if this clock is behind the replica that deleted it.
	created := max(stampOf(now), stamp(sh.tombs[id])+1)
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

// Record records one activity of org, whatever MaxOrgs says: for callers
// that create orgs on purpose. woke is true when the org was dormant (or
// new) and is now active.
func (s *Store) Record(id string) (o Org, woke bool) {
	o, woke, _ = s.record(id, WakeActivity, false)
	return o, woke
}

// RecordFor records one activity of org, saying what it was (activity, or
// an enqueue hint naming the org). Past MaxOrgs, activity for a new org is
// refused with a *LimitError.
func (s *Store) RecordFor(id string, why WakeReason) (o Org, woke bool, err error) {
	return s.record(id, why, true)
}

func (s *Store) record(id string, why WakeReason, limited bool) (o Org, woke bool, err error) {
	s.metrics.events.Inc()
	now := s.opts.Now()
	sh := s.shard(id)
	sh.mu.Lock()
	if limited {
		if err := s.refuseNew(sh, id); err != nil {
			sh.mu.Unlock()
			return Org{}, false, err
		}
	}
	e, created := s.getOrCreate(sh, id, now)
	e.by = byOf(why)
	var wasDormant, prev time.Time
	advanced := created
	if !created {
		prev = e.rec.LastActivity.Time()
		advanced = mergeActivity(&e.rec, stampOf(now), sh.tombs[id])
		before := e.rec.DormantSince.Time()
		if woke, _, next := s.settle(&e.rec, now); woke {
			wasDormant = before
			s.metrics.moved("dormant", "active")
			s.markUrgent(sh, id, e)
			s.rearm(id, e, next)
		} else {
			s.markDirty(sh, id, e)
		}
	}
	e.notify()
	o = s.snapshot(id, e)
	sh.mu.Unlock()
	s.changed(Change{Org: id, Activity: o.LastActivity})
	if advanced && s.opts.OnActivity != nil {
		s.opts.OnActivity(id, prev, o.LastActivity)
	}
	switch {
	case created:
		s.log.Info("new org", "org", id, "reason", why)
	case !wasDormant.IsZero():
		s.log.Info("org woke", "org", id, "reason", why, "dormant_since", wasDormant,
			"dormant_for", now.Sub(wasDormant).Round(time.Second))
		s.transition(Transition{Org: id, Woke: true, Reason: why, LastActivity: o.LastActivity,
			DormantSince: wasDormant, IdleWindow: o.IdleWindow})
	}
	return o, created || !wasDormant.IsZero(), nil
}

// refuseNew returns a *LimitError when id is new and the store holds
// MaxOrgs orgs. The cap is checked without a global lock, so concurrent
// first sightings may pass it by their number. Caller holds sh.mu.
func (s *Store) refuseNew(sh *shard, id string) error {
	if _, ok := sh.orgs[id]; ok || s.opts.MaxOrgs <= 0 || s.count.Load() < int64(s.opts.MaxOrgs) {
		return nil
	}
	s.metrics.refused.Inc()
	return &LimitError{Org: id, Max: s.opts.MaxOrgs}
}

// Sight returns org, creating it as active from now if it was never seen:
// a fresh deployment must not drop to zero before anyone used it. Past
// MaxOrgs a new org is refused with a *LimitError.
func (s *Store) Sight(id string) (Org, error) {
	sh := s.shard(id)
	sh.mu.Lock()
	if e, ok := sh.orgs[id]; ok { // KEDA's every call: keep the lock short
		rec, by := e.rec, e.by
		sh.mu.Unlock()
		return s.orgOf(id, rec, by), nil
	}
	if err := s.refuseNew(sh, id); err != nil {
		sh.mu.Unlock()
		return Org{}, err
	}
	e, created := s.getOrCreate(sh, id, s.opts.Now())
	o := s.snapshot(id, e)
	sh.mu.Unlock()
	if created {
		s.namedByTrigger(id, o.LastActivity)
	}
	return o, nil
}

// namedByTrigger reports an org a trigger created: to the other replicas,
// and in the log. Caller holds no lock.
func (s *Store) namedByTrigger(id string, created time.Time) {
	s.changed(Change{Org: id, Activity: created})
	s.log.Info("new org", "org", id, "reason", "first seen in a trigger")
}

// changed tells OnChange of a change made here.
func (s *Store) changed(c Change) {
	if s.opts.OnChange != nil {
		s.opts.OnChange(c)
	}
}

// Get returns org, or false if it was never seen.
func (s *Store) Get(id string) (Org, bool) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.orgs[id]
	if !ok {
		return Org{}, false
	}
	return s.snapshot(id, e), true
}

// Known says whether this store has heard of id: it holds it, or holds its
// tombstone. Another replica's idle counts or history of an org not known
// here came before the org's creation did (messages are not ordered).
func (s *Store) Known(id string) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, held := sh.orgs[id]
	_, deleted := sh.tombs[id]
	return held || deleted
}

// expire is the scheduler's callback at an org's deadline: the end of its
// window, or an edge of its warm schedule.
func (s *Store) expire(id string, at time.Time) {
	sh := s.shard(id)
	sh.mu.Lock()
	e, ok := sh.orgs[id]
	if !ok || e.scheduled != stampOf(at) {
		sh.mu.Unlock()
		return
	}
	e.scheduled = 0
	before := e.rec.DormantSince.Time()
	woke, slept, next := s.settle(&e.rec, s.opts.Now())
	s.rearm(id, e, next)
	if !woke && !slept {
		sh.mu.Unlock()
		return
	}
	if woke {
		s.metrics.moved("dormant", "active")
		e.by = bySchedule
	} else {
		s.metrics.moved("active", "dormant")
	}
	s.markUrgent(sh, id, e)
	e.notify()
	last, window, since := e.rec.LastActivity.Time(), s.window(e.rec), e.rec.DormantSince.Time()
	sh.mu.Unlock()
	if woke {
		s.log.Info("org woke", "org", id, "reason", WakeSchedule, "dormant_since", before)
		s.transition(Transition{Org: id, Woke: true, Reason: WakeSchedule, LastActivity: last, DormantSince: before, IdleWindow: window})
		return
	}
	s.log.Info("org went dormant", "org", id, "last_activity", last, "idle_window", window, "dormant_since", since)
	s.transition(Transition{Org: id, LastActivity: last, DormantSince: since, IdleWindow: window})
}

func (s *Store) transition(t Transition) {
	if s.opts.OnTransition != nil {
		s.opts.OnTransition(t)
	}
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
