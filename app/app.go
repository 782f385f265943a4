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
	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/pools"
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
	kinds     *replication.Kinds      // every store's state, for replication, snapshots and backups
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
	sec       *security
	ledger    *usage.Ledger
	idle      *idletimes.Store
	history   *history.Store
	pools     *pools.Store
	poolLoop  *pool.Loop
	feed      *feed.Feed   // nil without --activity-subscription
	clock     *clock.Clock // nil when Options.Now was given
	// What runs from Run until stop, by the stage of stop that ends it
	// (run.go); started says Run ran.
	bg, replG, eventsG *group
	started            bool
	closers            []func() error // New's, for a stop without Run
	done               chan struct{}
	stopOnce           sync.Once
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
	a.started = true
	go func() {
		if err := a.metrics.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	a.startBackground(errc)
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
		_ = a.metrics.Close()
		if !a.started {
			err = a.closeParts() // never ran: what New opened, last first
			return
		}
		_ = a.kedaLis.Close() // already closed when Run served it
		_ = a.apiLis.Close()
		_ = a.metricsLn.Close()
		if a.fleet != nil {
			a.fleet.Stop() // the last term hands over before replication stops
		}
		a.bg.Stop()
		a.replG.Stop()      // after the background's last flushes, which it drains
		if a.depth != nil { // after the feed, which may read the embedded Pub/Sub
			a.depth.stop()
		}
		err = errors.Join(a.store.Close(), a.db.Close())
		a.eventsG.Stop()
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
