package replication

import (
	"context"
	"time"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/idletimes"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/usage"
)

// Exporter hands over every org's state as changes; activity.Store
// provides it.
type Exporter interface {
	Export(send func([]activity.Change) error) error
}

// Replica is what joining needs of this replica's store.
type Replica interface {
	Store
	Digester
	Exporter
}

// JoinOptions configure Join.
type JoinOptions struct {
	Peers Peers
	Store Replica
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
	var seen *recording
	if o.Prune != nil && !o.Empty {
		seen = &recording{Replica: o.Store, orgs: map[string]bool{}}
		first.Store = seen
	}
	from, ok := r.catchUp(ctx, first)
	if !ok {
		return
	}
	if seen != nil && from != "" {
		n, err := o.Prune(func(org string) bool { return seen.orgs[org] })
		if err != nil {
			r.log.Error("could not remove the orgs no peer holds; they may come back", "err", err)
		} else {
			r.log.Info("kept only the orgs a peer's snapshot holds", "peer_replica", from, "removed", n)
		}
	}
	o.Ready()
	next := o.AntiEntropy
	if !o.Empty {
		r.republish(o.Store, o.Peers.Sinks)
		next = min(next, restartRecheck)
	}
	for {
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { AntiEntropy(actx, o.Peers, o.Store, next, o.AntiEntropy); close(done) }()
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
		if _, ok := r.catchUp(ctx, heal); !ok {
			return
		}
		r.log.Info("a peer's snapshot filled the gap the lost subscription left; ready again")
		o.Ready()
		next = o.AntiEntropy
	}
}

// catchUp loads a peer's snapshot as Join says, and names the replica it
// came from ("" when none held state); false when ctx ended first.
func (r *Replicator) catchUp(ctx context.Context, o JoinOptions) (string, bool) {
	for {
		tctx, cancel := context.WithTimeout(ctx, restartCatchUp)
		if o.Empty {
			tctx, cancel = context.WithCancel(ctx)
		}
		_, from, err := Bootstrap(tctx, o.Peers, o.Store)
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

// recording is a store that notes every org a snapshot applied to it
// names.
type recording struct {
	Replica
	orgs map[string]bool
}

func (r *recording) Apply(cs []activity.Change) error {
	for _, c := range cs {
		r.orgs[c.Org] = true
	}
	return r.Replica.Apply(cs)
}

// republish queues this replica's whole state for the others: its orgs,
// and the idle counts and history days that a stop may have left queued
// here (they are sent only when they grow, so nothing else would resend
// them).
func (r *Replicator) republish(store Exporter, sinks Sinks) {
	n := 0
	_ = store.Export(func(cs []activity.Change) error {
		for _, c := range cs {
			r.Enqueue(c)
		}
		n += len(cs)
		return nil
	})
	if sinks.Idle != nil {
		if err := sinks.Idle.Export(func(cs []idletimes.Counts) error {
			for _, c := range cs {
				r.EnqueueIdle(c)
			}
			return nil
		}); err != nil {
			r.log.Warn("idle counts not republished after a restart", "err", err)
		}
	}
	if sinks.History != nil {
		if err := sinks.History.Export(func(ds []history.Day) error {
			for _, d := range ds {
				r.EnqueueDay(d)
			}
			return nil
		}); err != nil {
			r.log.Warn("activity history not republished after a restart", "err", err)
		}
	}
	r.log.Info("republished this replica's state after a restart, so changes accepted but not published before it stopped reach the others", "changes", n)
}

// UsageExporter hands over the ledger's hours; usage.Ledger provides it.
type UsageExporter interface {
	Export(send func([]usage.Hour) error) error
}

// Snapshot sends store's state, then, when asked and ledger is not nil,
// the ledger's hours, in chunks as replicas exchange them: what
// AdminService.Snapshot streams to a peer.
func Snapshot(store Exporter, ledger UsageExporter, idle IdleTimes, days History) func(withUsage bool, send func(*pb.SnapshotResponse) error) error {
	return func(withUsage bool, send func(*pb.SnapshotResponse) error) error {
		err := store.Export(func(cs []activity.Change) error { return send(&pb.SnapshotResponse{Changes: ToProto(cs)}) })
		if err == nil && idle != nil {
			err = idle.Export(func(cs []idletimes.Counts) error { return send(&pb.SnapshotResponse{IdleTimes: idleToProto(cs)}) })
		}
		if err == nil && days != nil {
			err = days.Export(func(ds []history.Day) error { return send(&pb.SnapshotResponse{History: daysToProto(ds)}) })
		}
		if err != nil || ledger == nil || !withUsage {
			return err
		}
		return ledger.Export(func(hs []usage.Hour) error { return send(&pb.SnapshotResponse{Usage: usageToProto(hs)}) })
	}
}
