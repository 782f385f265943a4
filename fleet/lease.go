package fleet

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// The Lease's durations: client-go's usual ones. A new leader takes over
// at most leaseDuration after the last one vanished without releasing it.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// Namespace is the namespace this pod runs in: $POD_NAMESPACE (the
// downward API), else the service account's, else "default".
func Namespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// elect takes part in the election until ctx ends, standing again each
// time leadership is lost. On the way out it releases the Lease it holds,
// so another replica takes over at once rather than after the Lease
// expires.
// lead runs while this replica leads; its ctx ends when leadership is
// lost or the election stops. Two calls never overlap: a new term's waits
// for the last one's to return. The Lease may be released before lead
// returns (client-go releases it as elect ends): work that must end before
// another replica leads has to be stopped before elect's ctx is.
func elect(ctx context.Context, o Options, lead func(ctx context.Context)) error {
	cs := o.Client
	if cs == nil {
		var err error
		if cs, err = kubernetes.NewForConfig(rest.CopyConfig(o.Config)); err != nil {
			return fmt.Errorf("leader election: kubernetes client: %w", err)
		}
	}
	log := cmp.Or(o.Logger, slog.New(slog.DiscardHandler)).With("component", "fleet")
	ns := cmp.Or(o.Namespace, Namespace())
	leading := prometheus.NewGauge(prometheus.GaugeOpts{Name: "orgscaler_leader",
		Help: "1 while this replica leads the fleet (records Events and counts the GPU-hours ledger), 0 otherwise."})
	if o.Registerer != nil {
		o.Registerer.MustRegister(leading)
	}
	var term sync.Mutex
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaOf(ns, o.Name),
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	cfg := leaderelection.LeaderElectionConfig{
		Lock: lock, Name: o.Name, ReleaseOnCancel: true,
		LeaseDuration: leaseDuration,
		RenewDeadline: renewDeadline,
		RetryPeriod:   retryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				// client-go runs this in a goroutine it does not wait for,
				// and may start the next term's before this one returns.
				term.Lock()
				defer term.Unlock()
				if lctx.Err() != nil { // this term, or the election, ended before it began
					return
				}
				leading.Set(1)
				log.Info("leading the fleet: recording Events and counting GPU-hours", "lease", ns+"/"+o.Name)
				lead(lctx)
			},
			OnStoppedLeading: func() {
				leading.Set(0)
				log.Info("not leading the fleet", "lease", ns+"/"+o.Name)
			},
			OnNewLeader: func(id string) {
				if id != o.Identity {
					log.Info("the fleet's leader", "replica", id, "lease", ns+"/"+o.Name)
				}
			},
		},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(cfg)
		if err != nil {
			return fmt.Errorf("leader election on lease %s/%s: %w", ns, o.Name, err)
		}
		le.Run(ctx) // returns when leadership is lost, or ctx ends
	}
	// A term still running finishes first; one not begun finds its ctx,
	// derived from ours, done and never starts.
	term.Lock()
	//lint:ignore SA2001 waiting for the term to end is the point
	term.Unlock()
	return nil
}

func metaOf(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}
