package pubsubdepth

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/orgscaler/orgscaler/internal/watch"
)

// Checker tells whether a subscription exists.
type Checker interface {
	Exists(ctx context.Context, sub string) (bool, error)
}

// Grouper is implemented by a Source whose one query answers several
// subscriptions: Group names the query sub belongs to (Cloud Monitoring:
// the project queried). A Source without it is queried per project.
type Grouper interface {
	Group(sub string) string
}

// TrackerOptions configure a Tracker.
type TrackerOptions struct {
	Source  Source
	Checker Checker // nil: existence is never confirmed
	// Refresh is how often every tracked subscription is fetched, and the
	// least time between two queries of one group (project).
	Refresh time.Duration
	// MaxAge is how long a point is trusted, and a hint kept without a
	// newer point.
	MaxAge time.Duration
	// EmptyAfter is how far back the source looks for a point (at least
	// MaxAge; default 1h): an existing subscription with no point at all
	// over it counts as empty, and one whose newest point is older than
	// MaxAge but within it is blind, never empty.
	EmptyAfter time.Duration
	// DropAfter drops a subscription nobody asked about for this many
	// refreshes (default 10), and never sooner than MinDropAfter.
	DropAfter int
	// MinDropAfter is the least time a subscription stays tracked without
	// a question (default 5m): KEDA asks about an idle ScaledObject only
	// every pollingInterval, which may be longer than 10 short refreshes,
	// and a dropped subscription starts blind when it is asked again.
	MinDropAfter time.Duration
	// RecheckMissing is how often a missing subscription is looked up
	// again, in case it was created since (default 1m).
	RecheckMissing time.Duration
	// MaxBackoff bounds how long a subscription whose fetch keeps failing
	// waits before the next try (default 5m; it starts at Refresh and
	// doubles).
	MaxBackoff time.Duration
	// MaxSubscriptions caps the subscriptions tracked at once (default
	// DefaultMaxSubscriptions): each costs memory and a share of every
	// Monitoring query, and KEDA's metadata and hints can name any.
	MaxSubscriptions int
	Now              func() time.Time
	Logger           *slog.Logger
}

// DefaultMaxSubscriptions is far above the subscriptions a fleet of
// ScaledObjects names, and bounds what names from outside can cost.
const DefaultMaxSubscriptions = 10_000

// LimitError refuses a subscription not yet tracked when MaxSubscriptions
// are.
type LimitError struct {
	Subscription string
	Max          int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("subscription %s is not tracked: %d subscriptions are already (--max-subscriptions); raise the limit, or remove the triggers whose subscriptions are gone", e.Subscription, e.Max)
}

// Tracker keeps the backlog of every subscription being asked about, fresh
// in the background, and answers from memory.
type Tracker struct {
	opts TrackerOptions
	log  *slog.Logger

	mu     sync.Mutex
	subs   map[string]*tracked
	groups map[string]*group
	kick   chan struct{}
	checkC chan struct{}
	lastOK time.Time // the last fetch that succeeded for at least one subscription
}

type tracked struct {
	group     string
	lastAsked time.Time
	observed  Point
	hasPoint  bool
	fetched   bool // a fetch that covered it succeeded at least once
	err       error
	failures  int       // fetches failed in a row
	retryAt   time.Time // not fetched before this, after failures
	exists    Existence
	checkedAt time.Time
	checking  bool
	hints     []hint // in arrival order, at most maxHints
	watchers  watch.List
	forgotten bool     // its trigger is gone: dropped when the last watcher leaves
	hintIDs   []string // the last maxHintIDs ids of hints from other replicas, to count each once
}

// maxHintIDs bounds the remote hint ids remembered per subscription:
// Pub/Sub redelivers within minutes, and far fewer hints than this come
// in that time.
const maxHintIDs = 256

// group is one query of the source (a project): queried at most once per
// Refresh, however many new subscriptions are named in between.
type group struct {
	lastCall time.Time
	inFlight bool
	members  int // tracked subscriptions in it
}

// hint is one enqueue hint: n messages said to be enqueued at at.
type hint struct {
	at time.Time
	n  int64
}

// maxHints bounds the hints kept per subscription: past it the two oldest
// merge into one, with their saturating sum and the older time.
const maxHints = 16

// NewTracker returns a Tracker; call Run to start refreshing.
func NewTracker(o TrackerOptions) *Tracker {
	if o.DropAfter <= 0 {
		o.DropAfter = 10
	}
	if o.MinDropAfter <= 0 {
		o.MinDropAfter = 5 * time.Minute
	}
	if o.RecheckMissing <= 0 {
		o.RecheckMissing = time.Minute
	}
	if o.EmptyAfter <= 0 {
		o.EmptyAfter = DefaultEmptyAfter
	}
	o.EmptyAfter = max(o.EmptyAfter, o.MaxAge)
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tracker{opts: o, log: o.Logger.With("component", "pubsubdepth"),
		subs: make(map[string]*tracked), groups: make(map[string]*group),
		kick: make(chan struct{}, 1), checkC: make(chan struct{}, 1)}
}

// DefaultEmptyAfter is the default lookback: an hour without any point is
// what it takes for an existing subscription to count as empty.
const DefaultEmptyAfter = time.Hour

// Backlog returns what is known of sub now, from memory, and tracks it: a
// subscription asked about for the first time is fetched in the
// background, at once unless its group was queried within Refresh.
func (t *Tracker) Backlog(sub string) Depth {
	now := t.opts.Now()
	t.mu.Lock()
	s, err := t.get(sub, now)
	if err != nil {
		t.mu.Unlock()
		return Depth{Subscription: sub, Err: err}
	}
	s.lastAsked, s.forgotten = now, false
	d := t.depth(sub, s, now)
	t.mu.Unlock()
	return d
}

// get returns sub's entry, creating it and asking for a fetch, or a
// *LimitError when MaxSubscriptions are tracked. Caller holds t.mu.
func (t *Tracker) get(sub string, now time.Time) (*tracked, error) {
	s, ok := t.subs[sub]
	if !ok {
		if len(t.subs) >= t.opts.MaxSubscriptions {
			return nil, &LimitError{Subscription: sub, Max: t.opts.MaxSubscriptions}
		}
		s = &tracked{lastAsked: now, group: t.groupOf(sub)}
		t.subs[sub] = s
		g := t.groups[s.group]
		if g == nil {
			g = &group{}
			t.groups[s.group] = g
		}
		g.members++
		signal(t.kick)
		signal(t.checkC)
	}
	return s, nil
}

func (t *Tracker) groupOf(sub string) string {
	if g, ok := t.opts.Source.(Grouper); ok {
		return g.Group(sub)
	}
	project, _, _ := ParseName(sub)
	return project
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Forget stops tracking sub, whose trigger is gone: now, or when the last
// stream still watching it ends.
func (t *Tracker) Forget(sub string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.subs[sub]
	switch {
	case !ok:
	case len(s.watchers) == 0:
		t.drop(sub, s)
	default:
		s.forgotten = true
	}
}

// drop removes sub, and its group once it is empty. Caller holds t.mu.
func (t *Tracker) drop(sub string, s *tracked) {
	delete(t.subs, sub)
	if g := t.groups[s.group]; g != nil {
		g.members--
		t.dropIdle(s.group)
	}
}

// dropIdle forgets group name once it has no subscription and no query in
// flight. Caller holds t.mu.
func (t *Tracker) dropIdle(name string) {
	if g := t.groups[name]; g != nil && g.members == 0 && !g.inFlight {
		delete(t.groups, name)
	}
}

// Len is the number of subscriptions tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.subs)
}

// Tracked reports whether sub is tracked.
func (t *Tracker) Tracked(sub string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.subs[sub]
	return ok
}

// Hint counts n more messages on sub until the source shows a point
// observed after the hint, and tells every watcher of sub at once.
func (t *Tracker) Hint(sub string, n int64) (Depth, error) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.get(sub, now)
	if err != nil {
		return Depth{}, err
	}
	s.lastAsked = now
	if n > 0 {
		s.addHint(hint{at: now, n: n})
	}
	if s.exists == Missing {
		// Work enqueued on it: it may have just been created. Look again now
		// rather than at the next periodic recheck.
		s.exists, s.checkedAt = ExistenceUnknown, time.Time{}
		signal(t.checkC)
	}
	s.notify()
	return t.depth(sub, s, now), nil
}

// ApplyHint counts a hint another replica accepted (n messages on sub at
// at), once whatever the redeliveries of id, and tells sub's watchers.
func (t *Tracker) ApplyHint(id, sub string, n int64, at time.Time) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.get(sub, now)
	if err != nil {
		return // the replica that took it refused none; this one is full
	}
	if slices.Contains(s.hintIDs, id) {
		return
	}
	if len(s.hintIDs) == maxHintIDs {
		s.hintIDs = append(s.hintIDs[:0], s.hintIDs[1:]...)
	}
	s.hintIDs = append(s.hintIDs, id)
	s.lastAsked = now
	if n > 0 && now.Sub(at) <= t.opts.MaxAge {
		s.addHint(hint{at: at, n: n})
		sort.SliceStable(s.hints, func(i, j int) bool { return s.hints[i].at.Before(s.hints[j].at) })
	}
	s.notify()
}

// addHint appends h, merging the two oldest hints when there are
// maxHints: the count saturates and the older time stands, so a flood of
// hints can neither grow memory nor overflow into a negative backlog.
func (s *tracked) addHint(h hint) {
	if len(s.hints) == maxHints {
		s.hints[1] = hint{at: s.hints[0].at, n: satAdd(s.hints[0].n, s.hints[1].n)}
		s.hints = append(s.hints[:0], s.hints[1:]...)
	}
	s.hints = append(s.hints, h)
}

// satAdd is a + b for non-negative counts, stopping at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (t *Tracker) depth(sub string, s *tracked, now time.Time) Depth {
	d := Depth{Subscription: sub, Observed: s.observed, Exists: s.exists, Err: s.err}
	if !s.hasPoint {
		d.Observed = Point{}
	}
	t.expireHints(s, now)
	for _, h := range s.hints {
		d.Hint = satAdd(d.Hint, h.n)
		d.HintAt = h.at
	}
	var base int64
	d.age, d.maxAge, d.emptyAfter = max(0, now.Sub(s.observed.At)), t.opts.MaxAge, t.opts.EmptyAfter
	switch {
	case s.hasPoint && d.age <= t.opts.MaxAge:
		d.Known, base, d.why = true, s.observed.Messages, whyFresh
		d.Until = s.observed.At.Add(t.opts.MaxAge).Add(time.Nanosecond)
	case s.exists == Missing:
		d.why = whyMissing
	case !s.hasPoint && s.fetched && s.exists == Exists:
		d.Known, d.why = true, whyNoPointYet
	case s.hasPoint:
		d.why = whyStale
	case s.err != nil:
		d.why = whyFetchFailed
	case !s.fetched:
		d.why = whyNotFetched
	default:
		d.why = whyUnconfirmed
	}
	if d.Hint > 0 {
		if hintEnd := s.hints[0].at.Add(t.opts.MaxAge).Add(time.Nanosecond); d.Until.IsZero() || hintEnd.Before(d.Until) {
			d.Until = hintEnd // the oldest hint ends first
		}
		d.Known = true
	}
	d.Messages = satAdd(base, d.Hint)
	return d
}

// expireHints drops each hint the source has caught up with (a point
// observed after it) and each kept longer than the max age, so hints that
// keep coming never pile up on a backlog the source already shows. Caller
// holds t.mu.
func (t *Tracker) expireHints(s *tracked, now time.Time) {
	kept := s.hints[:0]
	for _, h := range s.hints {
		if (s.hasPoint && s.observed.At.After(h.at)) || now.Sub(h.at) > t.opts.MaxAge {
			continue
		}
		kept = append(kept, h)
	}
	clear(s.hints[len(kept):])
	s.hints = kept
}

// Fresh reports whether the source has answered within the max age (or
// nothing is tracked yet): health follows it.
func (t *Tracker) Fresh() bool {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.subs) == 0 {
		return true
	}
	return !t.lastOK.IsZero() && now.Sub(t.lastOK) <= t.opts.MaxAge
}

// Snapshot returns every tracked subscription, by name.
func (t *Tracker) Snapshot() []Depth {
	now := t.opts.Now()
	t.mu.Lock()
	out := make([]Depth, 0, len(t.subs))
	for sub, s := range t.subs {
		out = append(out, t.depth(sub, s, now))
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Subscription < out[j].Subscription })
	return out
}

// Watch is a subscription to the changes of one Pub/Sub subscription's
// backlog: C receives a value (coalesced) after every change.
type Watch struct {
	c   watch.Signal
	sub string
	t   *Tracker
}

// C is signalled after each change.
func (w *Watch) C() <-chan struct{} { return w.c }

// Watch follows sub's backlog; it also keeps sub tracked while it lasts.
func (t *Tracker) Watch(sub string) (*Watch, error) {
	w := &Watch{c: watch.New(), sub: sub, t: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.get(sub, t.opts.Now())
	if err != nil {
		return nil, err
	}
	s.forgotten = false
	s.watchers.Add(w.c)
	return w, nil
}

// Stop ends the watch.
func (w *Watch) Stop() {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	if s, ok := w.t.subs[w.sub]; ok {
		s.watchers.Remove(w.c)
		if s.forgotten && len(s.watchers) == 0 {
			w.t.drop(w.sub, s)
		}
	}
}

func (s *tracked) notify() { s.watchers.Notify() }
