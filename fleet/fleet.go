// Package fleet elects one replica of the fleet, through a Kubernetes
// Lease (client-go's leaderelection), to do the duties that must happen
// once for the fleet rather than once per replica: count the GPU-hours
// ledger, tally every trigger and record Events, patch Knative Revisions.
// Answers to KEDA never depend on it: every replica answers from its own
// copy of the state.
//
// A term leads every duty in the order given, and at its end follows them
// in the reverse order, then hands over (publishes what the term counted)
// before the Lease is let go, so the next leader's term begins after this
// one's has ended everywhere.
package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Duty is work only the fleet's leader does.
type Duty interface {
	// Lead starts the duty for a term, named uniquely across the fleet's
	// terms. It must return promptly: a duty that works through the term
	// runs its own goroutine.
	Lead(term string)
	// Follow ends it: once it returns, the duty does nothing another
	// replica's term would do again.
	Follow()
}

// Options configure a Fleet.
type Options struct {
	Config *rest.Config
	// Client, when set, is used instead of a client made from Config
	// (tests give client-go's fake clientset).
	Client    kubernetes.Interface
	Namespace string // of the Lease; Namespace() when ""
	Name      string // of the Lease
	Identity  string // this replica (--replica-id)
	Logger    *slog.Logger
	// Registerer, when set, gets orgscaler_leader.
	Registerer prometheus.Registerer
	// Ready says this replica can lead: it stands for the Lease only once
	// it is true (every org's state held, every ScaledObject read). Nil:
	// at once.
	Ready func() bool
	// Duties are led in this order and followed in the reverse one.
	Duties []Duty
	// Handover, when set, runs after every duty has followed and before
	// the Lease goes: it publishes what the term counted (replication's
	// Sync), within HandoverTimeout.
	Handover func(ctx context.Context) error
	Now      func() time.Time // names terms; time.Now when nil
}

// HandoverTimeout bounds a term's hand-over: past it, what the term
// counted reaches the other replicas when Pub/Sub takes it.
const HandoverTimeout = 5 * time.Second

// Fleet stands for the fleet's Lease and runs the duties while it leads.
type Fleet struct {
	o       Options
	log     *slog.Logger
	leading atomic.Bool
	stop    chan struct{} // closed by Stop: no term begins after it
	term    sync.Mutex    // held through a term
	end     context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

// New returns a Fleet whose duties follow until Start wins the Lease.
func New(o Options) *Fleet {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range o.Duties {
		d.Follow()
	}
	return &Fleet{o: o, log: o.Logger.With("component", "fleet"), stop: make(chan struct{})}
}

// Start stands for the Lease, once Ready, until Stop.
func (f *Fleet) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.end = cancel
	f.wg.Go(func() {
		if !f.waitReady(ctx) {
			return
		}
		if err := elect(ctx, f.o, f.lead); err != nil {
			f.log.Error("not standing for the fleet's lease: this replica never does the fleet's duties", "err", err)
		}
	})
}

// waitReady waits until Ready, or ctx ends (false).
func (f *Fleet) waitReady(ctx context.Context) bool {
	if f.o.Ready == nil {
		return true
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for !f.o.Ready() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// Leading reports whether this replica leads now.
func (f *Fleet) Leading() bool { return f.leading.Load() }

// lead is one term: every duty leads until ctx ends (leadership lost) or
// Stop; then they follow, last first, and the term hands over.
func (f *Fleet) lead(ctx context.Context) {
	f.term.Lock()
	defer f.term.Unlock()
	select {
	case <-f.stop:
		return // stopping: no new term
	default:
	}
	term := fmt.Sprintf("%s-%d", f.o.Identity, f.o.Now().UnixNano())
	for _, d := range f.o.Duties {
		d.Lead(term)
	}
	f.leading.Store(true)
	select {
	case <-ctx.Done():
	case <-f.stop:
	}
	f.leading.Store(false)
	for i := len(f.o.Duties) - 1; i >= 0; i-- {
		f.o.Duties[i].Follow()
	}
	if f.o.Handover == nil {
		return
	}
	hctx, cancel := context.WithTimeout(context.Background(), HandoverTimeout)
	defer cancel()
	if err := f.o.Handover(hctx); err != nil {
		f.log.Warn("what this term counted is not yet published: it reaches the other replicas when Pub/Sub takes it", "term", term, "err", err)
	}
}

// Stop ends this replica's term, if it leads, once its duties have
// followed and it has handed over, and then leaves the election
// (releasing the Lease), so the next leader's term begins after this one
// ends. It is safe to call more than once, and without Start.
func (f *Fleet) Stop() {
	f.once.Do(func() {
		close(f.stop)
		// A term running ends first; one not begun sees stop and never will.
		f.term.Lock()
		//lint:ignore SA2001 waiting for the term to end is the point
		f.term.Unlock()
		if f.end != nil {
			f.end()
		}
		f.wg.Wait()
	})
}
