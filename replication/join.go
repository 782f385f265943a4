package replication

import (
	"context"
	"time"
)

// JoinOptions configure Join.
type JoinOptions struct {
	Peers Peers
	// Digest is this replica's digest of its orgs, compared with a
	// peer's by anti-entropy.
	Digest Digester
	// Empty says the store started with no org (a new pod, a lost volume).
	Empty bool
	// AntiEntropy is how often digests are compared with a peer's.
	AntiEntropy time.Duration
	// Ready is called once this replica holds every org's state;
	// NotReady when it no longer may (its subscription was lost).
	Ready    func()
	NotReady func()
	// Prune, when set, says this replica was away longer than tombstones
	// are kept: it waits for a peer's snapshot as an empty one does, then
	// removes here the orgs the snapshot did not hold (deleted elsewhere,
	// their tombstones gone), so it never brings them back.
	Prune func(keep func(org string) bool) (int, error)
}

// restartCatchUp bounds how long a restarted replica waits for a peer's
// snapshot before it answers from its own state; restartRecheck is when
// it first compares digests with a peer's again.
const (
	restartCatchUp = 10 * time.Second
	restartRecheck = 3 * time.Second
)

// Join brings this replica level with its peers, calls Ready, then keeps
// it level (anti-entropy) until ctx ends. An empty store loads a peer's
// snapshot, retrying while peers exist but none is ready. A store with
// state (a restart) tries once, so a fleet restarting at once never waits
// on itself; then it sends its own whole state again, since a crash can
// leave changes on disk that were accepted but not yet published, and
// looks at a peer's digest again soon: Pub/Sub holds the messages it had
// handed to the dead process until their ack deadline (on the emulator,
// they were seen never to come back).
func (r *Replicator) Join(ctx context.Context, o JoinOptions) {
	first := o
	switch {
	case o.Prune != nil && !o.Empty:
		r.log.Warn("this replica was away longer than tombstones are kept: not ready until a peer's snapshot replaces its state")
		first.Empty = true
	case r.created.Load() && !o.Empty:
		// State on disk but no subscription: it expired (or was deleted)
		// while this replica was away, so what was published meanwhile is
		// only in the peers' state. Wait for it, as an empty replica does.
		r.log.Warn("this replica's subscription was made anew at start: not ready until a peer's snapshot fills what was published while it was away")
		first.Empty = true
	}
	var seen map[string]bool
	if o.Prune != nil && !o.Empty {
		seen = map[string]bool{}
	}
	from, ok := r.catchUp(ctx, first, seen)
	if !ok {
		return
	}
	if seen != nil && from != "" {
		n, err := o.Prune(func(org string) bool { return seen[org] })
		if err != nil {
			r.log.Error("could not remove the orgs no peer holds; they may come back", "err", err)
		} else {
			r.log.Info("kept only the orgs a peer's snapshot holds", "peer_replica", from, "removed", n)
		}
	}
	o.Ready()
	next := o.AntiEntropy
	if !o.Empty {
		r.republish()
		next = min(next, restartRecheck)
	}
	for {
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { r.antiEntropy(actx, o.Peers, o.Digest, next, o.AntiEntropy); close(done) }()
		select {
		case <-ctx.Done():
		case <-r.lost:
		}
		cancel()
		<-done
		if ctx.Err() != nil {
			return
		}
		// The subscription was made again: what was published while it
		// was gone is only in the peers' state.
		if o.NotReady != nil {
			o.NotReady()
		}
		heal := o
		heal.Empty = true // wait for a peer's snapshot, as an empty replica does
		if _, ok := r.catchUp(ctx, heal, nil); !ok {
			return
		}
		r.log.Info("a peer's snapshot filled the gap the lost subscription left; ready again")
		o.Ready()
		next = o.AntiEntropy
	}
}

// catchUp loads a peer's snapshot as Join says, noting in seen (when not
// nil) every org it names, and names the replica it came from ("" when
// none held state); false when ctx ended first.
func (r *Replicator) catchUp(ctx context.Context, o JoinOptions, seen map[string]bool) (string, bool) {
	for {
		tctx, cancel := context.WithTimeout(ctx, restartCatchUp)
		if o.Empty {
			tctx, cancel = context.WithCancel(ctx)
		}
		var note func(string)
		if seen != nil {
			note = func(org string) { seen[org] = true }
		}
		_, from, err := r.bootstrap(tctx, o.Peers, note)
		cancel()
		switch {
		case ctx.Err() != nil:
			return "", false
		case err == nil:
			return from, true
		case !o.Empty:
			r.log.Warn("restarted without a peer's snapshot: answering from this replica's own state while its subscription catches up", "err", err)
			return "", true
		}
		r.log.Warn("not ready: no snapshot from a peer yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(2 * time.Second):
		}
	}
}

// republish queues this replica's whole state for the others: every
// kind but the JoinOnly ones, including the idle counts and history days
// a stop may have left queued here (they are sent only when they grow,
// so nothing else would resend them).
func (r *Replicator) republish() {
	counts := []any{}
	for _, k := range r.ks.list {
		if k.joinOnly() {
			continue
		}
		n, err := k.republish(r.queue)
		if err != nil {
			r.log.Warn("not republished after a restart", "kind", k.name(), "err", err)
		}
		counts = append(counts, k.name(), n)
	}
	r.log.Info("republished this replica's state after a restart, so changes accepted but not published before it stopped reach the others", counts...)
}
