package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/storage"
)

// group is work that runs from Run until its stage of stop: each stage
// ends its group and waits for it.
type group struct {
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func newGroup() *group {
	ctx, cancel := context.WithCancel(context.Background())
	return &group{ctx: ctx, cancel: cancel}
}

// Go runs f with the group's context.
func (g *group) Go(f func(ctx context.Context)) { g.wg.Go(func() { f(g.ctx) }) }

// Stop ends the group's work and waits for it.
func (g *group) Stop() {
	g.cancel()
	g.wg.Wait()
}

// startBackground starts every part that works in the background, in the
// groups stop ends in order: the background (stopped, with its last
// flushes, before the store closes), then replication (which drains what
// those flushes handed it), then Events (which record to the last).
// errc gets an error that must stop the process.
func (a *App) startBackground(errc chan<- error) {
	if a.depth != nil {
		a.depth.start()
	}
	if a.events != nil {
		a.eventsG.Go(func(ctx context.Context) { logErr(a, "kubernetes events off", a.events.Run(ctx)) })
	}
	bg := a.bg
	if a.sec.tokens != nil {
		bg.Go(func(ctx context.Context) { a.sec.tokens.Run(ctx, a.opts.TokensReload) })
	}
	if a.objects != nil {
		bg.Go(a.objects.Run)
	}
	if a.knative != nil {
		bg.Go(a.knative.Run)
	}
	if a.repl != nil {
		a.replG.Go(func(ctx context.Context) { a.runReplication(ctx, errc) })
		if len(a.peers.Addrs) > 0 {
			prune := a.pruneIfAway()
			bg.Go(func(ctx context.Context) {
				a.repl.Join(ctx, replication.JoinOptions{Peers: a.peers, Digest: digester(a.digest), Empty: a.empty,
					AntiEntropy: a.opts.AntiEntropy, Ready: a.gate.Loaded, NotReady: a.gate.Loading, Prune: prune})
			})
		}
	}
	bg.Go(func(ctx context.Context) { a.ledger.Run(ctx, a.opts.FlushInterval, a.opts.Now) })
	bg.Go(a.poolLoop.Run)
	bg.Go(func(ctx context.Context) { a.history.Run(ctx, a.opts.FlushInterval) })
	bg.Go(func(ctx context.Context) { a.db.RunGC(ctx, storage.DefaultGCInterval) })
	if a.clock != nil {
		bg.Go(func(ctx context.Context) { a.clock.Watch(ctx, time.Second) })
	}
	if a.feed != nil {
		bg.Go(func(ctx context.Context) { logErr(a, "activity feed stopped with an error", a.feed.Run(ctx)) })
	}
	switch {
	case a.fleet != nil:
		a.fleet.Start()
	case a.repl != nil:
		a.log.Warn("several replicas without a cluster (--kubeconfig or --in-cluster): no Lease elects a leader, so each replica counts the GPU-hours of the calls it answers and reports differ")
	}
}

// runReplication publishes and applies until ctx ends. A twin (another
// live process with this replica's id) stops the process: it must not
// serve beside it.
func (a *App) runReplication(ctx context.Context, errc chan<- error) {
	var hints replication.Hints
	if a.depth != nil {
		hints = a.depth.tracker
	}
	err := a.repl.Run(ctx, hints)
	var twin *replication.TwinError
	if errors.As(err, &twin) {
		errc <- err
		return
	}
	logErr(a, "replication stopped with an error", err)
}

func logErr(a *App, msg string, err error) {
	if err != nil {
		a.log.Error(msg, "err", err)
	}
}
