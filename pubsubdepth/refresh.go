package pubsubdepth

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"
)

// maxFetches bounds the groups (projects) fetched at once, and maxChecks
// the existence lookups in flight at once.
const (
	maxFetches = 16
	maxChecks  = 8
)

// checkTimeout bounds one existence lookup.
const checkTimeout = 5 * time.Second

// Run keeps every tracked subscription fresh until ctx ends. Each group
// (project) is fetched on its own, under its own timeout, at most once per
// Refresh: a slow project delays no other, and new names wait for their
// group's next turn rather than adding queries. A group not queried within
// Refresh is fetched as soon as a new subscription of it is named.
// Existence lookups run beside the fetches, never inside them.
func (t *Tracker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { t.checkLoop(ctx) })
	fetches := make(chan struct{}, maxFetches)
	finished := make(chan struct{}, 1)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for _, job := range t.due() {
			wg.Go(func() {
				fetches <- struct{}{}
				defer func() { <-fetches }()
				t.fetch(ctx, job)
				signal(finished)
			})
		}
		var due <-chan time.Time
		if wait, ok := t.nextDue(); ok {
			timer.Reset(max(wait, 0))
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		case <-finished:
		case <-due:
		}
	}
}

// fetchJob is one group's query: the subscriptions it covers.
type fetchJob struct {
	group string
	subs  []string
}

// due starts every group whose turn has come, and drops the subscriptions
// nobody asked about for DropAfter refreshes.
func (t *Tracker) due() []fetchJob {
	now := t.opts.Now()
	idle := max(time.Duration(t.opts.DropAfter)*t.opts.Refresh, t.opts.MinDropAfter)
	t.mu.Lock()
	defer t.mu.Unlock()
	bySub := map[string][]string{}
	for sub, s := range t.subs {
		if now.Sub(s.lastAsked) > idle && len(s.watchers) == 0 {
			t.drop(sub, s)
			t.log.Info("stopped tracking a subscription nobody asks about", "subscription", sub, "last_asked", s.lastAsked)
			continue
		}
		if g := t.groups[s.group]; !g.inFlight && !now.Before(g.lastCall.Add(t.opts.Refresh)) && !now.Before(s.retryAt) {
			bySub[s.group] = append(bySub[s.group], sub)
		}
	}
	jobs := make([]fetchJob, 0, len(bySub))
	for g, subs := range bySub {
		sort.Strings(subs)
		t.groups[g].inFlight, t.groups[g].lastCall = true, now
		jobs = append(jobs, fetchJob{group: g, subs: subs})
	}
	return jobs
}

// nextDue is how long until the next group's turn, if any group waits.
func (t *Tracker) nextDue() (time.Duration, bool) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var next time.Time
	for _, s := range t.subs {
		g := t.groups[s.group]
		if g.inFlight {
			continue
		}
		at := g.lastCall.Add(t.opts.Refresh)
		if s.retryAt.After(at) {
			at = s.retryAt
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next.Sub(now), !next.IsZero()
}

// fetch runs one group's query under its own timeout and applies it.
func (t *Tracker) fetch(ctx context.Context, job fetchJob) {
	fctx, cancel := context.WithTimeout(ctx, t.opts.Refresh)
	points, err := t.opts.Source.Fetch(fctx, job.subs)
	cancel()
	if err != nil && ctx.Err() != nil {
		t.mu.Lock()
		t.groups[job.group].inFlight = false
		t.dropIdle(job.group)
		t.mu.Unlock()
		return
	}
	if err != nil {
		t.log.Warn("backlog fetch failed; keeping the last points", "group", job.group, "subscriptions", len(job.subs), "err", err)
	}
	t.apply(job, points, err)
	signal(t.checkC)
}

// refreshNow fetches every group at once, whatever its last call, then
// looks up what needs it, and returns when both are done: for tests.
func (t *Tracker) refreshNow(ctx context.Context) {
	t.mu.Lock()
	for _, g := range t.groups {
		g.lastCall = time.Time{}
	}
	for _, s := range t.subs {
		s.retryAt = time.Time{}
	}
	t.mu.Unlock()
	for _, job := range t.due() {
		t.fetch(ctx, job)
	}
	var wg sync.WaitGroup
	for _, sub := range t.checksDue() {
		wg.Go(func() { t.check(ctx, sub) })
	}
	wg.Wait()
}

func (t *Tracker) apply(job fetchJob, points map[string]Point, err error) {
	now := t.opts.Now()
	var partial *FetchError
	errors.As(err, &partial)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.groups[job.group].inFlight = false // an in-flight group is never dropped
	defer t.dropIdle(job.group)
	if err == nil || (partial != nil && len(partial.bySub) < len(job.subs)) {
		t.lastOK = now
	}
	for _, sub := range job.subs {
		s, ok := t.subs[sub]
		if !ok {
			continue
		}
		before := t.depth(sub, s, now)
		subErr := err
		if partial != nil {
			subErr = partial.For(sub) // other projects' answers stand
		}
		t.applyOne(s, points, sub, subErr, now)
		after := t.depth(sub, s, now)
		if before.Known != after.Known || before.Messages != after.Messages {
			s.notify()
		}
	}
}

// applyOne applies one subscription's part of a fetch. Caller holds t.mu.
func (t *Tracker) applyOne(s *tracked, points map[string]Point, sub string, err error, now time.Time) {
	if err != nil {
		// Retried with backoff: a subscription that keeps failing costs a
		// query per backoff, not one per refresh.
		s.err = err
		s.failures++
		s.retryAt = now.Add(min(t.opts.Refresh<<min(s.failures-1, 20), t.opts.MaxBackoff))
		return
	}
	s.err, s.fetched, s.failures, s.retryAt = nil, true, 0, time.Time{}
	p, ok := points[sub]
	switch {
	case ok && (!s.hasPoint || !p.At.Before(s.observed.At)):
		if p.At.After(now) {
			// Stamped in this clock's future (this node's clock is behind
			// the service's): it ages from when it came, so it is never
			// fresher than real elapsed time says.
			p.At = now
		}
		s.observed, s.hasPoint = p, true
		s.exists = Exists // it has a series: it exists
	case !ok && s.hasPoint && now.Sub(s.observed.At) > t.opts.EmptyAfter:
		// No point over the whole lookback: the series has stopped. It
		// counts as empty once it is confirmed to exist, as a
		// subscription that never had a point does.
		s.observed, s.hasPoint = Point{}, false
		s.exists, s.checkedAt = ExistenceUnknown, time.Time{}
	}
}

// checkLoop looks up existence where it is needed, each lookup on its own
// and bounded, until ctx ends: a lookup that hangs delays no fetch.
func (t *Tracker) checkLoop(ctx context.Context) {
	if t.opts.Checker == nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxChecks)
	tick := time.NewTicker(min(t.opts.Refresh, t.opts.RecheckMissing))
	defer tick.Stop()
	for {
		for _, sub := range t.checksDue() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				t.check(ctx, sub)
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.checkC:
		case <-tick.C:
		}
	}
}

// checksDue lists the subscriptions to look up now, and marks them being
// looked up. A subscription with a point needs no lookup: Monitoring has
// its series, so it exists.
func (t *Tracker) checksDue() []string {
	if t.opts.Checker == nil {
		return nil
	}
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for sub, s := range t.subs {
		if !s.checking && !s.hasPoint && s.exists != Exists && now.Sub(s.checkedAt) > t.opts.RecheckMissing {
			s.checking = true
			out = append(out, sub)
		}
	}
	sort.Strings(out)
	return out
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
	s.checking = false
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
