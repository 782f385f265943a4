package app

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"

	"github.com/orgscaler/orgscaler/fleet"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/tally"
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

// inFleet says whether several replicas share the work that must happen
// once: with replication and a cluster, a Lease leader does the fleet's
// duties (package fleet), and replicates the ledger to the others.
func (a *App) inFleet() bool { return a.repl != nil && a.objects != nil }

// newFleet makes the fleet's duties (ledger, tally and Events, Knative
// actuator) follow until this replica wins the Lease; nil outside a fleet.
func (a *App) newFleet(answers tally.Answerer) *fleet.Fleet {
	if !a.inFleet() {
		return nil
	}
	t := tally.New(tally.Options{Answers: answers, Targets: a.objects, Ledger: a.ledger, Observer: a.events})
	a.tally = t
	duties := []fleet.Duty{a.ledger, t}
	if a.knative != nil {
		duties = append(duties, a.knative) // followed first: no Service is counted after the ledger pauses
	}
	return fleet.New(fleet.Options{Config: a.kube, Namespace: a.opts.LeaseNamespace, Name: a.opts.LeaseName,
		Identity: a.opts.ReplicaID, Logger: a.opts.Logger, Registerer: a.registry, Now: a.opts.Now,
		Ready: func() bool { return a.gate.HoldsAll() && a.objects.Synced() }, Duties: duties, Handover: a.repl.Sync})
}

// digest is this replica's state as replicas compare it: its orgs', and
// with them its pools' when it has any (a scaler without pools digests as
// one from before pools did).
func (a *App) digest() ([32]byte, int) {
	sum, n := a.store.Digest()
	if p, ok := a.pools.Digest(); ok {
		sum = sha256.Sum256(append(sum[:], p[:]...))
	}
	return sum, n
}

// digester is a digest function as replication's Digester.
type digester func() ([32]byte, int)

func (d digester) Digest() ([32]byte, int) { return d() }
