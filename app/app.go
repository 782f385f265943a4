// Package app wires the scaler together: the org store, KEDA's service on
// one port, our activity and admin API on another, with health and
// reflection on both. cmd/scaler is a thin shell around it, and tests boot
// the whole daemon in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/clock"
	"github.com/orgscaler/orgscaler/feed"
	"github.com/orgscaler/orgscaler/fleet"
	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/idletimes"
	"github.com/orgscaler/orgscaler/knative"
	"github.com/orgscaler/orgscaler/kubeevents"
	"github.com/orgscaler/orgscaler/readiness"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/storage"
	"github.com/orgscaler/orgscaler/tally"
	"github.com/orgscaler/orgscaler/usage"
)

// App is a running scaler.
type App struct {
	opts      Options
	log       *slog.Logger
	db        *storage.DB
	store     *activity.Store
	kedaLis   net.Listener
	apiLis    net.Listener
	kedaSrv   *grpc.Server
	apiSrv    *grpc.Server // the API's gRPC, served through apiHTTP
	apiHTTP   *http.Server // the API port: gRPC, and the Connect protocol (HTTP/JSON)
	health    *health.Server
	apiHealth *health.Server
	depth     *depth                  // nil without a backlog source
	repl      *replication.Replicator // nil with one replica
	empty     bool                    // started with no org: waits for a snapshot
	peers     replication.Peers
	events    *kubeevents.Recorder    // nil without a cluster
	kube      *rest.Config            // nil without a cluster
	dyn       dynamic.Interface       // nil without a cluster
	gate      *readiness.Gate         // may this replica answer: orgs held, clock within bounds, ScaledObjects read, backlog fresh
	fleet     *fleet.Fleet            // nil outside a fleet
	tally     *tally.Tally            // nil outside a fleet
	objects   *scaledobjects.Registry // nil without a cluster
	knative   *knative.Actuator       // nil without --knative
	keda      *scaler.Server
	registry  *prometheus.Registry
	metricsLn net.Listener
	metrics   *http.Server
	eventsWG  sync.WaitGroup
	eventsEnd context.CancelFunc
	sec       *security
	ledger    *usage.Ledger
	idle      *idletimes.Store
	history   *history.Store
	feed      *feed.Feed // nil without --activity-subscription
	bgWG      sync.WaitGroup
	bgEnd     context.CancelFunc
	clock     *clock.Clock // nil when Options.Now was given
	// Replication stops after everything else in the background, so what
	// their last flushes hand it (history days, ledger hours, idle counts)
	// is in its drain.
	replWG   sync.WaitGroup
	replEnd  context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// Addr is the address KEDA's service listens on.
func (a *App) Addr() string { return a.kedaLis.Addr().String() }

// PubSubAddr is the embedded Pub/Sub's address (for PUBSUB_EMULATOR_HOST),
// or "" when it is not embedded.
func (a *App) PubSubAddr() string {
	if a.depth == nil || a.depth.embedded == nil {
		return ""
	}
	return a.depth.embedded.Addr()
}

// MetricsAddr is the address /metrics is served on.
func (a *App) MetricsAddr() string { return a.metricsLn.Addr().String() }

// DataDir is the Badger directory in use.
func (a *App) DataDir() string { return a.opts.DataDir }

// APIAddr is the address of the activity and admin API.
func (a *App) APIAddr() string { return a.apiLis.Addr().String() }

// Run serves until ctx ends, then stops gracefully: streams are closed, RPCs
// in flight finish, and every org is written to disk.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	if a.depth != nil {
		a.depth.start()
	}
	if a.events != nil {
		ectx, cancel := context.WithCancel(context.Background())
		a.eventsEnd = cancel
		a.eventsWG.Go(func() {
			if err := a.events.Run(ectx); err != nil {
				a.log.Error("kubernetes events off", "err", err)
			}
		})
	}
	go func() {
		if err := a.metrics.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	bg, cancel := context.WithCancel(context.Background())
	a.bgEnd = cancel
	if a.sec.tokens != nil {
		a.bgWG.Go(func() { a.sec.tokens.Run(bg, a.opts.TokensReload) })
	}
	if a.objects != nil {
		a.bgWG.Go(func() { a.objects.Run(bg) })
	}
	if a.knative != nil {
		a.bgWG.Go(func() { a.knative.Run(bg) })
	}
	if a.repl != nil {
		rctx, rcancel := context.WithCancel(context.Background())
		a.replEnd = rcancel
		a.replWG.Go(func() {
			var hints replication.Hints
			if a.depth != nil {
				hints = a.depth.tracker
			}
			sinks := a.peers.Sinks // what a snapshot carries, and the log too
			sinks.Store, sinks.Hints, sinks.Known = a.store, hints, a.store.Known
			if err := a.repl.Run(rctx, sinks); err != nil {
				var twin *replication.TwinError
				if errors.As(err, &twin) {
					errc <- err // the process stops: it must not serve beside its twin
					return
				}
				a.log.Error("replication stopped with an error", "err", err)
			}
		})
		if len(a.peers.Addrs) > 0 {
			a.bgWG.Go(func() {
				a.repl.Join(bg, replication.JoinOptions{Peers: a.peers, Store: a.store, Empty: a.empty,
					AntiEntropy: a.opts.AntiEntropy, Ready: a.gate.Loaded, NotReady: a.gate.Loading, Prune: a.pruneIfAway()})
			})
		}
	}
	// Stopped before the store closes, with a last flush.
	a.bgWG.Go(func() { a.ledger.Run(bg, a.opts.FlushInterval, a.opts.Now) })
	a.bgWG.Go(func() { a.history.Run(bg, a.opts.FlushInterval) })
	a.bgWG.Go(func() { a.db.RunGC(bg, storage.DefaultGCInterval) })
	if a.clock != nil {
		a.bgWG.Go(func() { a.clock.Watch(bg, time.Second) })
	}
	if a.feed != nil {
		a.bgWG.Go(func() {
			if err := a.feed.Run(bg); err != nil {
				a.log.Error("activity feed stopped with an error", "err", err)
			}
		})
	}
	switch {
	case a.fleet != nil:
		a.fleet.Start()
	case a.repl != nil:
		a.log.Warn("several replicas without a cluster (--kubeconfig or --in-cluster): no Lease elects a leader, so each replica counts the GPU-hours of the calls it answers and reports differ")
	}
	a.logSecurity()
	a.health.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	go func() {
		select {
		case <-a.done:
			hcancel()
		case <-hctx.Done():
		}
	}()
	go a.gate.Watch(hctx, a.health, "", "externalscaler.ExternalScaler")
	go func() { errc <- serve(a.kedaSrv, a.kedaLis, "KEDA") }()
	go func() { errc <- serveAPI(a.apiHTTP, a.apiLis) }()
	a.log.Info("scaler serving", "keda", a.Addr(), "api", a.APIAddr(), "metrics", a.MetricsAddr(), "data_dir", a.opts.DataDir,
		"idle_window", a.opts.IdleWindow, "flush_interval", a.opts.FlushInterval, "pubsub", a.opts.PubSub)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	return errors.Join(err, a.stop())
}

func serve(s *grpc.Server, lis net.Listener, name string) error {
	if err := s.Serve(lis); err != nil {
		return fmt.Errorf("serve %s: %w", name, err)
	}
	return nil
}

func (a *App) stop() error {
	var err error
	a.stopOnce.Do(func() {
		a.health.Shutdown()
		a.apiHealth.Shutdown()
		close(a.done)
		var wg sync.WaitGroup
		wg.Go(func() { gracefulStop(a.kedaSrv, a.opts.ShutdownGrace) })
		wg.Go(func() { stopAPI(a.apiHTTP, a.apiSrv, a.opts.ShutdownGrace) })
		wg.Wait()
		_ = a.kedaLis.Close() // already closed when Run served it
		_ = a.apiLis.Close()
		_ = a.metrics.Close()
		_ = a.metricsLn.Close()
		if a.fleet != nil {
			a.fleet.Stop() // the last term hands over before replication stops
		}
		if a.bgEnd != nil {
			a.bgEnd()
			a.bgWG.Wait()
			if a.replEnd != nil {
				a.replEnd()
				a.replWG.Wait()
			}
		} else {
			if a.repl != nil {
				_ = a.repl.Close() // never ran
			}
			if a.feed != nil {
				_ = a.feed.Close()
			}
		}
		if a.depth != nil { // after the feed, which may read the embedded Pub/Sub
			a.depth.stop()
		}
		err = errors.Join(a.store.Close(), a.db.Close())
		if a.eventsEnd != nil {
			a.eventsEnd()
			a.eventsWG.Wait()
		} else if a.events != nil {
			a.events.Close() // never ran
		}
		if err == nil {
			a.log.Info("scaler stopped; every org written to disk")
		}
	})
	return err
}

// LivenessService is the health service name that is SERVING for as long
// as the process runs: liveness probes use it, so a backlog source outage
// never restarts the scaler.
const LivenessService = "liveness"

func (a *App) httpHealth(service string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := a.health.Check(r.Context(), &healthpb.HealthCheckRequest{Service: service})
		st := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		if err == nil {
			st = resp.GetStatus()
		}
		if st != healthpb.HealthCheckResponse_SERVING {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, st)
	}
}

// Close stops an App whose Run was never called.
func (a *App) Close() error { return a.stop() }

func gracefulStop(s *grpc.Server, grace time.Duration) {
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.Stop()
		<-stopped
	}
}
