package pubsubdepth

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/orgscaler/orgscaler/internal/watch"
)

// Checker tells whether a subscription exists.
type Checker interface {
	Exists(ctx context.Context, sub string) (bool, error)
}

// TrackerOptions configure a Tracker.
type TrackerOptions struct {
	Source  Source
	Checker Checker // nil: existence is never confirmed
	// Refresh is how often every tracked subscription is fetched.
	Refresh time.Duration
	// MaxAge is how long a point is trusted, and a hint kept without a
	// newer point.
	MaxAge time.Duration
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
	Now            func() time.Time
	Logger         *slog.Logger
}

// Tracker keeps the backlog of every subscription being asked about, fresh
// in the background, and answers from memory.
type Tracker struct {
	opts TrackerOptions
	log  *slog.Logger

	mu     sync.Mutex
	subs   map[string]*tracked
	kick   chan struct{}
	lastOK time.Time // the last refresh whose fetch succeeded for at least one subscription
}

type tracked struct {
	lastAsked time.Time
	observed  Point
	hasPoint  bool
	fetched   bool // a fetch that covered it succeeded at least once
	err       error
	exists    Existence
	checkedAt time.Time
	hints     []hint // in arrival order
	watchers  watch.List
}

// hint is one enqueue hint: n messages said to be enqueued at at.
type hint struct {
	at time.Time
	n  int64
}

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
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tracker{opts: o, log: o.Logger.With("component", "pubsubdepth"),
		subs: make(map[string]*tracked), kick: make(chan struct{}, 1)}
}

// Backlog returns what is known of sub now, from memory, and tracks it: a
// subscription asked about for the first time is fetched at once in the
// background.
func (t *Tracker) Backlog(sub string) Depth {
	now := t.opts.Now()
	t.mu.Lock()
	s := t.get(sub, now)
	s.lastAsked = now
	d := t.depth(sub, s, now)
	t.mu.Unlock()
	return d
}

// get returns sub's entry, creating it and asking for a fetch. Caller
// holds t.mu.
func (t *Tracker) get(sub string, now time.Time) *tracked {
	s, ok := t.subs[sub]
	if !ok {
		s = &tracked{lastAsked: now}
		t.subs[sub] = s
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
	return s
}

// Hint counts n more messages on sub until the source shows a point
// observed after the hint, and tells every watcher of sub at once.
func (t *Tracker) Hint(sub string, n int64) Depth {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(sub, now)
	s.lastAsked = now
	if n > 0 {
		s.hints = append(s.hints, hint{at: now, n: n})
	}
	if s.exists == Missing {
		// Work enqueued on it: it may have just been created. Look again now
		// rather than at the next periodic recheck.
		s.exists, s.checkedAt = ExistenceUnknown, time.Time{}
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
	s.notify()
	return t.depth(sub, s, now)
}

func (t *Tracker) depth(sub string, s *tracked, now time.Time) Depth {
	d := Depth{Subscription: sub, Observed: s.observed, Exists: s.exists, Err: s.err}
	if !s.hasPoint {
		d.Observed = Point{}
	}
	t.expireHints(s, now)
	for _, h := range s.hints {
		d.Hint += h.n
		d.HintAt = h.at
	}
	var base int64
	d.age, d.maxAge = now.Sub(s.observed.At), t.opts.MaxAge
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
	d.Messages = base + d.Hint
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

// Run refreshes every tracked subscription each Refresh, and new ones at
// once, until ctx ends.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(t.opts.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.refresh(ctx, false)
		case <-t.kick:
			t.refresh(ctx, true)
		}
	}
}

// refresh fetches the tracked subscriptions (only those never fetched when
// onlyNew), then looks up the existence of those that need it.
func (t *Tracker) refresh(ctx context.Context, onlyNew bool) {
	subs, check := t.due(onlyNew)
	if len(subs) > 0 {
		fctx, cancel := context.WithTimeout(ctx, t.opts.Refresh)
		points, err := t.opts.Source.Fetch(fctx, subs)
		cancel()
		if err != nil && ctx.Err() != nil {
			return
		}
		if err != nil {
			t.log.Warn("backlog fetch failed; keeping the last points", "subscriptions", len(subs), "err", err)
		}
		t.apply(subs, points, err)
	}
	t.checkAll(ctx, check)
}

// maxChecks bounds the existence lookups in flight at once.
const maxChecks = 8

func (t *Tracker) checkAll(ctx context.Context, subs []string) {
	sem := make(chan struct{}, maxChecks)
	var wg sync.WaitGroup
	for _, sub := range subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t.check(ctx, sub)
		})
	}
	wg.Wait()
}

// due lists what to fetch and what to check, and drops the subscriptions
// nobody asked about for DropAfter refreshes. A subscription with a point
// needs no lookup: Monitoring has its series, so it exists.
func (t *Tracker) due(onlyNew bool) (fetch, check []string) {
	now := t.opts.Now()
	idle := max(time.Duration(t.opts.DropAfter)*t.opts.Refresh, t.opts.MinDropAfter)
	t.mu.Lock()
	defer t.mu.Unlock()
	for sub, s := range t.subs {
		if now.Sub(s.lastAsked) > idle && len(s.watchers) == 0 {
			delete(t.subs, sub)
			t.log.Info("stopped tracking a subscription nobody asks about", "subscription", sub, "last_asked", s.lastAsked)
			continue
		}
		if !onlyNew || !s.fetched {
			fetch = append(fetch, sub)
		}
		if t.opts.Checker != nil && !s.hasPoint && s.exists != Exists && now.Sub(s.checkedAt) > t.opts.RecheckMissing {
			check = append(check, sub)
		}
	}
	sort.Strings(fetch)
	return fetch, check
}

func (t *Tracker) check(ctx context.Context, sub string) {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	ok, err := t.opts.Checker.Exists(cctx, sub)
	cancel()
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s, tracked := t.subs[sub]
	if !tracked {
		return
	}
	s.checkedAt = now // a failed lookup also waits RecheckMissing before the next
	if err != nil {
		t.log.Warn("cannot tell whether a subscription exists", "subscription", sub, "err", err)
		return
	}
	before := s.exists
	s.exists = Missing
	if ok {
		s.exists = Exists
	}
	if s.exists != before {
		if s.exists == Missing {
			t.log.Warn("subscription not found", "subscription", sub)
		}
		s.notify()
	}
}

// checkTimeout bounds one existence lookup.
const checkTimeout = 5 * time.Second

func (t *Tracker) apply(subs []string, points map[string]Point, err error) {
	now := t.opts.Now()
	var partial *FetchError
	errors.As(err, &partial)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil || (partial != nil && len(partial.bySub) < len(subs)) {
		t.lastOK = now
	}
	for _, sub := range subs {
		s, ok := t.subs[sub]
		if !ok {
			continue
		}
		before := t.depth(sub, s, now)
		subErr := err
		if partial != nil {
			subErr = partial.For(sub) // other projects' answers stand
		}
		if subErr != nil {
			s.err = subErr
		} else {
			s.err, s.fetched = nil, true
			if p, ok := points[sub]; ok && (!s.hasPoint || !p.At.Before(s.observed.At)) {
				s.observed, s.hasPoint = p, true
				s.exists = Exists // it has a series: it exists
			}
		}
		after := t.depth(sub, s, now)
		if before.Known != after.Known || before.Messages != after.Messages {
			s.notify()
		}
	}
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
func (t *Tracker) Watch(sub string) *Watch {
	w := &Watch{c: watch.New(), sub: sub, t: t}
	t.mu.Lock()
	t.get(sub, t.opts.Now()).watchers.Add(w.c)
	t.mu.Unlock()
	return w
}

// Stop ends the watch.
func (w *Watch) Stop() {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	if s, ok := w.t.subs[w.sub]; ok {
		s.watchers.Remove(w.c)
	}
}

func (s *tracked) notify() { s.watchers.Notify() }
