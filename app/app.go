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
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/api"
	"github.com/orgscaler/orgscaler/auth"
	"github.com/orgscaler/orgscaler/clock"
	"github.com/orgscaler/orgscaler/feed"
	"github.com/orgscaler/orgscaler/fleet"
	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/idletimes"
	"github.com/orgscaler/orgscaler/knative"
	"github.com/orgscaler/orgscaler/kubeevents"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/storage"
	"github.com/orgscaler/orgscaler/tally"
	"github.com/orgscaler/orgscaler/usage"
)

// App is a running scaler.
type App struct {
	opts       Options
	log        *slog.Logger
	db         *storage.DB
	store      *activity.Store
	kedaLis    net.Listener
	apiLis     net.Listener
	kedaSrv    *grpc.Server
	apiSrv     *grpc.Server // the API's gRPC, served through apiHTTP
	apiHTTP    *http.Server // the API port: gRPC, and the Connect protocol (HTTP/JSON)
	health     *health.Server
	apiHealth  *health.Server
	depth      *depth                  // nil without a backlog source
	repl       *replication.Replicator // nil with one replica
	ready      atomic.Bool             // holds every org's state (false while loading a snapshot)
	empty      bool                    // started with no org: waits for a snapshot
	healthKick chan struct{}           // re-evaluate health now (readiness changed)
	peers      replication.Peers
	events     *kubeevents.Recorder        // nil without a cluster
	kube       *rest.Config                // nil without a cluster
	skewed     atomic.Bool                 // this replica's clock is off by more than --max-clock-skew
	fleet      *fleet.Fleet                // nil outside a fleet
	tally      atomic.Pointer[tally.Tally] // nil outside a fleet; set after the store calls onTransition
	objects    *scaledobjects.Registry     // nil without a cluster
	knative    *knative.Actuator           // nil without --knative
	keda       *scaler.Server
	registry   *prometheus.Registry
	metricsLn  net.Listener
	metrics    *http.Server
	eventsWG   sync.WaitGroup
	eventsEnd  context.CancelFunc
	sec        *security
	ledger     *usage.Ledger
	idle       *idletimes.Store
	history    *history.Store
	feed       *feed.Feed // nil without --activity-subscription
	bgWG       sync.WaitGroup
	bgEnd      context.CancelFunc
	clock      *clock.Clock // nil when Options.Now was given
	// Replication stops after everything else in the background, so what
	// their last flushes hand it (history days, ledger hours, idle counts)
	// is in its drain.
	replWG   sync.WaitGroup
	replEnd  context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// New opens the store and binds both ports, so Addr and APIAddr are known
// before Run. On error nothing is left open.
func New(o Options) (*App, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	registry := prometheus.NewRegistry()
	var clk *clock.Clock
	if o.Now == nil {
		clk = clock.New(clock.Options{Wall: o.Wall, Elapsed: o.Elapsed, Logger: o.Logger, Registerer: registry})
		o.Now = clk.Now
	}
	o = withDefaults(o)
	a := &App{opts: o, log: o.Logger.With("component", "app"), done: make(chan struct{}), registry: registry, clock: clk,
		healthKick: make(chan struct{}, 1)}
	sec, err := newSecurity(o, a.registry)
	if err != nil {
		return nil, err
	}
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.sec = sec
	var dyn dynamic.Interface
	if o.Kubeconfig != "" || o.InCluster {
		cfg, err := kubeevents.Config(o.Kubeconfig)
		if err != nil {
			return nil, err
		}
		a.kube = cfg
		if a.events, err = kubeevents.New(cfg, o.Logger, a.objectsOf); err != nil {
			return nil, err
		}
		if dyn, err = dynamic.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
		if a.objects, err = scaledobjects.New(dyn, scaledobjects.Options{Logger: o.Logger, OnGone: a.onGone}); err != nil {
			return nil, err
		}
	}
	// On failure, everything opened so far is closed, last first.
	var undo []func() error
	ok := false
	defer func() {
		for i := len(undo) - 1; !ok && i >= 0; i-- {
			_ = undo[i]()
		}
	}()
	if a.events != nil {
		undo = append(undo, func() error { a.events.Close(); return nil })
	}
	var onChange func(activity.Change)
	if o.Replication == ReplicationPubSub {
		if a.peers, err = newPeers(o); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		a.repl, err = replication.New(ctx, replication.Options{Topic: o.ReplicationTopic, Replica: o.ReplicaID, Logger: o.Logger, Registerer: a.registry, Now: o.Now, Wait: o.ReplicationWait,
			Key: replication.KeyFrom(a.peers.Token), MaxSkew: o.MaxClockSkew, OnSkew: a.onSkew})
		cancel()
		if err != nil {
			return nil, err
		}
		undo = append(undo, a.repl.Close)
		onChange = a.repl.Enqueue
	}
	db, err := storage.Open(storage.Options{Dir: o.DataDir, Logger: o.Logger, Registerer: a.registry, MinFreeDisk: uint64(max(0, o.MinFreeDiskMB)) << 20})
	if err != nil {
		return nil, err
	}
	a.db = db
	undo = append(undo, db.Close)
	store, err := activity.Open(activity.Options{
		OnChange: onChange,
		DB:       db, IdleWindow: o.IdleWindow, FlushInterval: o.FlushInterval, Logger: o.Logger, Now: o.Now,
		OnTransition: a.onTransition, Registerer: a.registry, MaxOrgs: o.MaxOrgs, Replica: o.ReplicaID,
		MaxClockSkew: o.MaxClockSkew,
		OnActivity:   a.onActivity, OnDelete: a.onDelete,
	})
	if err != nil {
		return nil, err
	}
	a.store = store
	undo = append(undo, store.Close)
	var onIdle func(idletimes.Counts)
	var onDay func(history.Day)
	if a.repl != nil {
		onIdle, onDay = a.repl.EnqueueIdle, a.repl.EnqueueDay
	}
	holds := func(org string) bool { _, ok := store.Get(org); return ok }
	a.history = history.Open(history.Options{DB: db.Badger(), Logger: o.Logger, OnChange: onDay, Holds: holds, CheckDisk: db.CheckDisk, Now: o.Now})
	if a.idle, err = idletimes.Open(idletimes.Options{DB: db.Badger(), Replica: o.ReplicaID,
		OnUpdate: store.Notify, CheckDisk: db.CheckDisk, OnChange: onIdle, Holds: holds}); err != nil {
		return nil, err
	}
	a.ready.Store(true)
	if a.repl != nil && len(o.Peers) > 0 {
		// Not ready until Join has brought this replica level with its
		// peers (replication.Replicator.Join says how).
		a.ready.Store(false)
		a.empty = store.Len() == 0
	}
	var onFlush func([]usage.Hour)
	if a.inFleet() {
		onFlush = a.repl.EnqueueUsage
	}
	if a.ledger, err = usage.Open(db.Badger(), usage.Options{Logger: o.Logger, Retention: o.UsageRetention, Registerer: a.registry, Now: o.Now,
		CheckDisk: db.CheckDisk, OnFlush: onFlush}); err != nil {
		return nil, err
	}
	a.peers.Sinks = replication.Sinks{Usage: a.fleetLedger(), Idle: a.idle, History: a.history, Now: o.Now, MaxSkew: o.MaxClockSkew}
	if o.Knative {
		if err := a.newKnative(dyn); err != nil {
			return nil, err
		}
	}
	for _, l := range []struct {
		lis  *net.Listener
		addr string
		what string
	}{{&a.kedaLis, o.Listen, "KEDA"}, {&a.apiLis, o.APIListen, "the API"}, {&a.metricsLn, o.MetricsListen, "metrics"}} {
		if *l.lis, err = net.Listen("tcp", l.addr); err != nil {
			return nil, fmt.Errorf("listen for %s on %s: %w", l.what, l.addr, err)
		}
		undo = append(undo, (*l.lis).Close)
	}
	if err := sec.checkAPIAddr(a.apiLis.Addr(), o); err != nil {
		return nil, err
	}
	conns, err := apiConnLimit(o.APIMaxConnections)
	if err != nil {
		return nil, err
	}
	a.apiLis = netutil.LimitListener(a.apiLis, conns)
	if err := checkKEDAAddr(a.kedaLis.Addr(), o); err != nil {
		return nil, err
	}
	if a.depth, err = newDepth(o, a.registry); err != nil {
		return nil, err
	}
	if a.feed, err = a.newFeed(); err != nil {
		return nil, err
	}
	if a.feed != nil {
		undo = append(undo, a.feed.Close)
	}
	// In a fleet the leader's tally tells Events and the ledger, once for
	// the fleet; KEDA's calls to each replica tell neither.
	var observer scaler.Observer
	var ledger scaler.Ledger
	if !a.inFleet() {
		ledger = a.ledger
		if a.events != nil {
			observer = a.events
		}
	}
	var scalerBacklogs scaler.Backlogs
	var apiBacklogs api.Backlogs
	if a.depth != nil {
		scalerBacklogs, apiBacklogs = a.depth.tracker, a.depth.tracker
	}
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	a.registry.MustRegister(grpcMetrics)
	authz := sec.authorizer(a.registry)
	a.kedaSrv, a.health = newServer(grpcMetrics, sec.keda, nil, grpc.MaxConcurrentStreams(uint32(o.MaxStreamsPerConn)),
		// KEDA's client re-resolves the scaler's address only when a
		// connection ends: an age makes it find new replicas. The grace
		// outlasts any stream, which ends cleanly by itself first.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: o.KEDAMaxConnectionAge, MaxConnectionAgeGrace: o.KEDAMaxConnectionAge * 6 / 5}))
	var admit scaler.Admitter
	if a.objects != nil {
		admit = a.objects
	}
	if a.repl != nil {
		admit = gate{ready: &a.ready, skewed: &a.skewed, next: admit}
	}
	kedaServer := scaler.New(scaler.Options{
		MaxStreamAge: o.KEDAMaxConnectionAge,
		Orgs:         store, Backlogs: scalerBacklogs, Now: o.Now, Logger: o.Logger, Done: a.done, Observer: observer,
		Registerer: a.registry, Usage: ledger, Admit: admit, IdleTimes: a.idle,
	})
	a.keda = kedaServer
	a.fleet = a.newFleet(kedaServer)
	kedapb.RegisterExternalScalerServer(a.kedaSrv, kedaServer)
	a.apiSrv, a.apiHealth = newServer(grpcMetrics, nil, authz) // TLS is apiHTTP's
	var repl api.Replicator
	var snapshot func(bool, func(*pb.SnapshotResponse) error) error
	if a.repl != nil {
		repl, snapshot = a.repl, replication.Snapshot(store, a.fleetLedger(), a.idle, a.history)
	}
	apiServer := api.New(api.Options{Replication: repl, Snapshot: snapshot, Ready: a.current, Store: store, Backlogs: apiBacklogs, Explainer: kedaServer, Reports: a.ledger, Now: o.Now, Done: a.done, Replica: o.ReplicaID, History: a.history, Knative: a.knativeServices()})
	pb.RegisterActivityServiceServer(a.apiSrv, apiServer)
	pb.RegisterAdminServiceServer(a.apiSrv, apiServer)
	a.apiHTTP = newAPIServer(a.apiSrv, apiServer.Connect(MaxMessageSize), authz, sec.api, o.MaxStreamsPerConn, o.APIIdleTimeout)
	a.registerKept()
	grpcMetrics.InitializeMetrics(a.kedaSrv)
	grpcMetrics.InitializeMetrics(a.apiSrv)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	// The same health as the KEDA port's gRPC health, in plain HTTP: the
	// kubelet's gRPC probes cannot speak TLS, so with --tls-cert the probes
	// come here.
	mux.HandleFunc("/livez", a.httpHealth(LivenessService))
	mux.HandleFunc("/readyz", a.httpHealth(""))
	a.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ok = true
	return a, nil
}

// newServer builds a port's server: creds nil is plaintext, authz nil lets
// every call in. Refused calls still show in the gRPC metrics.
func newServer(m *grpcprom.ServerMetrics, creds credentials.TransportCredentials, authz *auth.Authorizer, extra ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	unary := []grpc.UnaryServerInterceptor{m.UnaryServerInterceptor()}
	stream := []grpc.StreamServerInterceptor{m.StreamServerInterceptor()}
	if authz != nil {
		unary, stream = append(unary, authz.Unary()), append(stream, authz.Stream())
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		// KEDA keeps one long-lived connection per scaler address; let it
		// ping to keep that connection alive through idle periods.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	opts = append(opts, extra...)
	s := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	return s, h
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
					AntiEntropy: a.opts.AntiEntropy, Ready: a.becomeReady, NotReady: a.becomeNotReady, Prune: a.pruneIfAway()})
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
	go a.watchHealth(ctx)
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

// watchHealth keeps the KEDA port's overall health SERVING only while the
// store is open and, with a backlog source, its data is fresh. Readiness
// probes use it.
func (a *App) watchHealth(ctx context.Context) {
	a.health.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	for {
		st, why := healthpb.HealthCheckResponse_SERVING, "serving"
		switch {
		case !a.ready.Load():
			st, why = healthpb.HealthCheckResponse_NOT_SERVING, "loading every org's state from a peer"
		case a.skewed.Load():
			st, why = healthpb.HealthCheckResponse_NOT_SERVING, "this replica's clock is off from Pub/Sub's by more than --max-clock-skew"
		case a.objects != nil && !a.objects.Synced():
			st, why = healthpb.HealthCheckResponse_NOT_SERVING, "ScaledObjects and ScaledJobs not yet read from the cluster"
		case a.depth != nil && !a.depth.tracker.Fresh():
			st, why = healthpb.HealthCheckResponse_NOT_SERVING, "backlog data not fresh"
		}
		if st != last {
			for _, svc := range []string{"", "externalscaler.ExternalScaler"} {
				a.health.SetServingStatus(svc, st)
			}
			switch {
			case last == healthpb.HealthCheckResponse_SERVICE_UNKNOWN:
			case st == healthpb.HealthCheckResponse_SERVING:
				a.log.Info("KEDA port ready", "status", st)
			default:
				a.log.Warn("KEDA port not ready", "status", st, "why", why)
			}
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-a.done:
			return
		case <-t.C:
		case <-a.healthKick:
		}
	}
}

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
