package app

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/orgscaler/orgscaler/leader"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/tlsconfig"
)

// newPeers is how this replica reaches the others' APIs.
func newPeers(o Options) (replication.Peers, error) {
	p := replication.Peers{Addrs: o.Peers, Self: o.ReplicaID, Logger: o.Logger}
	if o.PeerTokenFile != "" {
		b, err := os.ReadFile(o.PeerTokenFile)
		if err != nil {
			return p, fmt.Errorf("--peer-token-file: %w", err)
		}
		p.Token = strings.TrimSpace(string(b))
	}
	if o.PeerTLSCA != "" {
		var err error
		if p.TLS, err = tlsconfig.Client(o.PeerTLSCA, "", ""); err != nil {
			return p, fmt.Errorf("--peer-tls-ca: %w", err)
		}
	}
	return p, nil
}

// tallyEvery is how often the fleet's leader answers every trigger for
// itself, for the ledger and the answer Events; an org's wake or dormancy
// is tallied at once besides.
const tallyEvery = 5 * time.Second

// fleet says whether several replicas share the work that must happen
// once: with replication and a cluster, a Lease leader records Events and
// counts the GPU-hours ledger, which it replicates to the others.
func (a *App) fleet() bool { return a.repl != nil && a.objects != nil }

// fleetLedger is the ledger when it is the fleet's, for replication to
// carry; nil otherwise (each replica's own).
func (a *App) fleetLedger() interface {
	replication.Usage
	replication.UsageExporter
} {
	if !a.fleet() {
		return nil
	}
	return a.ledger
}

// startElection stands for the fleet's Lease, in a context of its own
// that stop ends before the rest, so the last leader's hours are
// published before replication stops.
func (a *App) startElection() {
	switch {
	case a.fleet():
		ctx, cancel := context.WithCancel(context.Background())
		a.leadEnd = cancel
		a.leadWG.Go(func() { a.elect(ctx) })
	case a.repl != nil:
		a.log.Warn("several replicas without a cluster (--kubeconfig or --in-cluster): no Lease elects a leader, so each replica counts the GPU-hours of the calls it answers and reports differ")
	}
}

// elect stands for the fleet's Lease once this replica holds every org's
// state and has read every ScaledObject (a leader tallies from both), and
// until ctx ends.
func (a *App) elect(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for !a.ready.Load() || !a.objects.Synced() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	err := leader.Run(ctx, leader.Options{Config: a.kube, Namespace: a.opts.LeaseNamespace, Name: a.opts.LeaseName,
		Identity: a.opts.ReplicaID, Logger: a.opts.Logger, Registerer: a.registry, Lead: a.lead})
	if err != nil {
		a.log.Error("not standing for the fleet's lease: this replica never records Events or counts GPU-hours", "err", err)
	}
}

// lead is this replica's term as the fleet's leader: it tallies every
// trigger, and every org that changes, until ctx ends or the scaler
// stops; then it counts up to now and publishes its last hours, before
// stop lets the Lease go.
func (a *App) lead(ctx context.Context) {
	a.leadMu.Lock()
	defer a.leadMu.Unlock()
	select {
	case <-a.leadStop:
		return // stopping: no new term
	default:
	}
	tally := func(org string) { a.keda.Tally(a.objects.Targets(org)) }
	a.ledger.Lead(fmt.Sprintf("%s-%d", a.opts.ReplicaID, a.opts.Now().UnixNano()))
	a.leading.Store(true)
	a.events.Lead(func() { tally("") })
	if a.knative != nil {
		a.knative.Lead()
	}
	t := time.NewTicker(tallyEvery)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-a.leadStop:
			done = true
		case <-t.C:
			tally("")
		case org := <-a.transitions:
			tally(org)
		}
	}
	a.leading.Store(false)
	a.events.Follow()
	if a.knative != nil {
		a.knative.Follow() // before the ledger pauses: no Service is counted after it
	}
	now := a.opts.Now()
	a.ledger.Pause(now)
	if err := a.ledger.Flush(now); err != nil {
		a.log.Error("the last hours counted as leader are not written", "err", err)
		return
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.repl.Sync(sctx); err != nil {
		a.log.Warn("the last hours counted as leader are not yet published: they reach the other replicas when Pub/Sub takes them", "err", err)
	}
}

// stopLeading ends this replica's term, if it leads, once its last hours
// are published, and then leaves the election (releasing the Lease), so
// the next leader's term begins after this one's ends.
func (a *App) stopLeading() {
	if a.leadEnd == nil {
		return
	}
	close(a.leadStop)
	// A term running ends first; one not begun sees leadStop and never will.
	a.leadMu.Lock()
	//lint:ignore SA2001 waiting for the term to end is the point
	a.leadMu.Unlock()
	a.leadEnd()
	a.leadWG.Wait()
}

// tallyOrg asks the leader to tally org's triggers now (its wake or
// dormancy); never blocks: a full queue waits for the next tally of all.
func (a *App) tallyOrg(org string) {
	if !a.leading.Load() {
		return
	}
	select {
	case a.transitions <- org:
	default:
	}
}
