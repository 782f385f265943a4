package pubsubdepth

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
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

	mu   sync.Mutex
	subs map[string]*tracked
	kick chan struct{}
}

type tracked struct {
	lastAsked time.Time
	observed  Point
	hasPoint  bool
	fetched   bool // a fetch that covered it succeeded at least once
	err       error
	exists    Existence
	checkedAt time.Time
	hint      int64
	hintAt    time.Time
	watchers  []*Watch
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
	s.hint += n
	s.hintAt = now
	s.notify()
	return t.depth(sub, s, now)
}

func (t *Tracker) depth(sub string, s *tracked, now time.Time) Depth {
	d := Depth{Subscription: sub, Observed: s.observed, Exists: s.exists, Err: s.err}
	if !s.hasPoint {
		d.Observed = Point{}
	}
	t.expireHint(s, now)
	d.Hint, d.HintAt = s.hint, s.hintAt
	var base int64
	switch age := now.Sub(s.observed.At); {
	case s.hasPoint && age <= t.opts.MaxAge:
		d.Known, base = true, s.observed.Messages
		d.Until = s.observed.At.Add(t.opts.MaxAge).Add(time.Nanosecond)
		d.Reason = fmt.Sprintf("%d messages observed %s ago", s.observed.Messages, age.Round(time.Second))
	case s.exists == Missing:
		d.Reason = "the subscription does not exist"
	case !s.hasPoint && s.fetched && s.exists == Exists:
		d.Known = true
		d.Reason = "the subscription exists and has had no point yet: 0 messages"
	case s.hasPoint:
		d.Reason = fmt.Sprintf("the last point is %s old, older than the depth max age %s", age.Round(time.Second), t.opts.MaxAge)
	case s.err != nil:
		d.Reason = fmt.Sprintf("fetching the backlog failed: %v", s.err)
	case !s.fetched:
		d.Reason = "the backlog has not been fetched yet"
	default:
		d.Reason = "no point yet, and the subscription is not confirmed to exist"
	}
	if d.Hint > 0 {
		if hintEnd := s.hintAt.Add(t.opts.MaxAge).Add(time.Nanosecond); d.Until.IsZero() || hintEnd.Before(d.Until) {
			d.Until = hintEnd
		}
		d.Known = true
		d.Reason += fmt.Sprintf(", plus %d hinted messages", d.Hint)
	}
	d.Messages = base + d.Hint
	return d
}

// expireHint drops a hint the source has caught up with, or one kept
// longer than the max age with no newer point. Caller holds t.mu.
func (t *Tracker) expireHint(s *tracked, now time.Time) {
	if s.hint == 0 {
		return
	}
	if (s.hasPoint && s.observed.At.After(s.hintAt)) || now.Sub(s.hintAt) > t.opts.MaxAge {
		s.hint, s.hintAt = 0, time.Time{}
	}
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
// onlyNew), after checking the existence of those that need it.
func (t *Tracker) refresh(ctx context.Context, onlyNew bool) {
	subs, check := t.due(onlyNew)
	for _, sub := range check {
		t.check(ctx, sub)
	}
	if len(subs) == 0 {
		return
	}
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

// due lists what to fetch and what to check, and drops the subscriptions
// nobody asked about for DropAfter refreshes.
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
		if onlyNew && s.fetched {
			continue
		}
		fetch = append(fetch, sub)
		if t.opts.Checker != nil && (s.exists == ExistenceUnknown || (s.exists == Missing && now.Sub(s.checkedAt) > t.opts.RecheckMissing)) {
			check = append(check, sub)
		}
	}
	sort.Strings(fetch)
	return fetch, check
}

func (t *Tracker) check(ctx context.Context, sub string) {
	cctx, cancel := context.WithTimeout(ctx, t.opts.Refresh)
	ok, err := t.opts.Checker.Exists(cctx, sub)
	cancel()
	if err != nil {
		t.log.Warn("cannot tell whether a subscription exists", "subscription", sub, "err", err)
		return
	}
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s, tracked := t.subs[sub]
	if !tracked {
		return
	}
	s.checkedAt = now
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

func (t *Tracker) apply(subs []string, points map[string]Point, err error) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, sub := range subs {
		s, ok := t.subs[sub]
		if !ok {
			continue
		}
		before := t.depth(sub, s, now)
		if err != nil {
			s.err = err
		} else {
			s.err, s.fetched = nil, true
			if p, ok := points[sub]; ok && (!s.hasPoint || !p.At.Before(s.observed.At)) {
				s.observed, s.hasPoint = p, true
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
	c   chan struct{}
	sub string
	t   *Tracker
}

// C is signalled after each change.
func (w *Watch) C() <-chan struct{} { return w.c }

// Watch follows sub's backlog; it also keeps sub tracked while it lasts.
func (t *Tracker) Watch(sub string) *Watch {
	w := &Watch{c: make(chan struct{}, 1), sub: sub, t: t}
	t.mu.Lock()
	s := t.get(sub, t.opts.Now())
	s.watchers = append(s.watchers, w)
	t.mu.Unlock()
	return w
}

// Stop ends the watch.
func (w *Watch) Stop() {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	s, ok := w.t.subs[w.sub]
	if !ok {
		return
	}
	for i, x := range s.watchers {
		if x == w {
			s.watchers = append(s.watchers[:i], s.watchers[i+1:]...)
			return
		}
	}
}

func (s *tracked) notify() {
	for _, w := range s.watchers {
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}
