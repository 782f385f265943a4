// Package app wires the scaler together: the org store, KEDA's service on
// one port, our activity and admin API on another, with health and
// reflection on both. cmd/scaler is a thin shell around it, and tests boot
// the whole daemon in-process.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"k8s.io/client-go/dynamic"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/api"
	"github.com/orgscaler/orgscaler/auth"
	"github.com/orgscaler/orgscaler/kubeevents"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/tlsconfig"
	"github.com/orgscaler/orgscaler/usage"
)

// Options is the whole configuration of the daemon.
type Options struct {
	Listen        string        // KEDA-facing gRPC address
	APIListen     string        // activity/admin gRPC address
	DataDir       string        // Badger directory
	IdleWindow    time.Duration // default idle window of an org
	FlushInterval time.Duration // how often coalesced activity is written
	Logger        *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// ShutdownGrace bounds how long a stop waits for RPCs in flight.
	ShutdownGrace time.Duration

	// PubSub is the backlog source: PubSubNone, PubSubEmbedded or
	// PubSubMonitoring.
	PubSub string
	// PubSubListen is where the embedded Pub/Sub listens.
	PubSubListen string
	// GCPProject, when set, is the project every Monitoring query goes to;
	// otherwise each subscription's own project.
	GCPProject         string
	MonitoringEndpoint string // HOST:PORT override of Cloud Monitoring
	MonitoringInsecure bool   // plaintext, no credentials: a local MetricService only
	DepthRefresh       time.Duration
	DepthMaxAge        time.Duration
	// DepthEmptyAfter is how far back Monitoring is asked for a point: an
	// existing subscription with none over it counts as empty; one whose
	// newest point is older than DepthMaxAge is blind.
	DepthEmptyAfter time.Duration

	// Kubeconfig, or InCluster, turns on Kubernetes Events on the
	// ScaledObjects the scaler serves.
	Kubeconfig string
	InCluster  bool

	// MetricsListen is where /metrics is served (Prometheus).
	MetricsListen string

	// TLS serves the KEDA port over TLS (mTLS with a client CA).
	TLS tlsconfig.Files
	// APITLS serves the API over TLS; with a client CA, client certificates
	// name their role in their subject's organization.
	APITLS tlsconfig.Files
	// APITokensFile holds the API's bearer tokens, one `TOKEN ROLE` a line.
	APITokensFile string
	// KEDAInsecure lets the KEDA port listen in plaintext (or TLS without
	// client certificates) on a non-loopback address.
	KEDAInsecure bool
	// MaxStreamsPerConn bounds the concurrent calls and streams of one
	// connection to the KEDA port.
	MaxStreamsPerConn int
	// KEDAMaxConnectionAge ends KEDA's connections (GOAWAY) after about
	// this long, and its streams cleanly, so its client re-resolves the
	// headless Service and spreads over the replicas there are now.
	KEDAMaxConnectionAge time.Duration
	// APIInsecure lets the API listen on a non-loopback address without
	// any authentication.
	APIInsecure bool
	// TokensReload is how often the tokens file is checked for changes.
	TokensReload time.Duration
	// UsageRetention is how long the hourly GPU-hours figures are kept.
	UsageRetention time.Duration
	// Replication is ReplicationNone (one replica, the default) or
	// ReplicationPubSub: every change is published to ReplicationTopic and
	// every replica applies every other's.
	Replication      string
	ReplicationTopic string // projects/P/topics/T
	// Peers are the other replicas' API ports (HOST:PORT, hosts resolved
	// to all their addresses): a replica that starts empty loads a
	// snapshot from one before it is ready.
	Peers []string
	// PeerTokenFile holds the bearer token presented to peers' APIs.
	PeerTokenFile string
	// AntiEntropy is how often a replica compares its digest with a random
	// peer's and applies that peer's snapshot when they differ.
	AntiEntropy time.Duration
	// ReplicaID names this replica (default: the hostname, a StatefulSet's
	// pod name) in the stamps of its changes and in Digest.
	ReplicaID string
	// MaxOrgs caps the orgs activity may create.
	MaxOrgs int
	// MinFreeDiskMB is the free space, in MiB, below which nothing is
	// written to the data dir; 0 uses the default, negative turns it off.
	MinFreeDiskMB int
}

// Replication modes.
const (
	ReplicationNone   = "none"
	ReplicationPubSub = "pubsub"
)

// Backlog sources.
const (
	PubSubNone       = "none"
	PubSubEmbedded   = "embedded"
	PubSubMonitoring = "monitoring"
)

// Defaults used by cmd/scaler and by New for zero fields.
const (
	DefaultListen          = "127.0.0.1:9090"
	DefaultAPIListen       = "127.0.0.1:9091"
	DefaultDataDir         = "./data"
	DefaultIdleWindow      = 24 * time.Hour
	DefaultFlushInterval   = 10 * time.Second
	DefaultShutdownGrace   = 10 * time.Second
	DefaultPubSubListen    = "127.0.0.1:8085"
	DefaultMetricsListen   = "127.0.0.1:9092"
	DefaultDepthRefresh    = 15 * time.Second
	DefaultDepthMaxAge     = 5 * time.Minute
	DefaultDepthEmptyAfter = time.Hour
	DefaultTokensReload    = 5 * time.Second
	DefaultMaxOrgs         = 1_000_000
	DefaultMinFreeDiskMB   = 64
	// DefaultMaxStreamsPerConn is far above what one KEDA operator opens
	// (a StreamIsActive per external-push trigger it watches), and a bound
	// on what one connection can make the scaler hold.
	DefaultMaxStreamsPerConn = 10_000
	// DefaultKEDAMaxConnectionAge lets KEDA find a new replica within
	// minutes, at the cost of one reconnect per stream per interval.
	DefaultKEDAMaxConnectionAge = 5 * time.Minute
	// DefaultAntiEntropy is the safety net's period: rare enough that a
	// full snapshot pull under load costs little.
	DefaultAntiEntropy = 5 * time.Minute
)

// MaxMessageSize bounds every message either port receives: KEDA's
// requests and our API's are a few hundred bytes, so anything near it is a
// mistake or an attack, refused with ResourceExhausted before it is read.
const MaxMessageSize = 1 << 20

// App is a running scaler.
type App struct {
	opts       Options
	log        *slog.Logger
	store      *activity.Store
	kedaLis    net.Listener
	apiLis     net.Listener
	kedaSrv    *grpc.Server
	apiSrv     *grpc.Server
	health     *health.Server
	apiHealth  *health.Server
	depth      *depth                  // nil without a backlog source
	repl       *replication.Replicator // nil with one replica
	ready      atomic.Bool             // holds every org's state (false while loading a snapshot)
	empty      bool                    // started with no org: waits for a snapshot
	healthKick chan struct{}           // re-evaluate health now (readiness changed)
	peers      replication.Peers
	events     *kubeevents.Recorder    // nil without a cluster
	objects    *scaledobjects.Registry // nil without a cluster
	keda       *scaler.Server
	registry   *prometheus.Registry
	metricsLn  net.Listener
	metrics    *http.Server
	eventsWG   sync.WaitGroup
	eventsEnd  context.CancelFunc
	sec        *security
	ledger     *usage.Ledger
	bgWG       sync.WaitGroup
	bgEnd      context.CancelFunc
	done       chan struct{}
	stopOnce   sync.Once
}

// New opens the store and binds both ports, so Addr and APIAddr are known
// before Run. On error nothing is left open.
func New(o Options) (*App, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = withDefaults(o)
	a := &App{opts: o, log: o.Logger.With("component", "app"), done: make(chan struct{}), registry: prometheus.NewRegistry(),
		healthKick: make(chan struct{}, 1)}
	sec, err := newSecurity(o, a.registry)
	if err != nil {
		return nil, err
	}
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.sec = sec
	if o.Kubeconfig != "" || o.InCluster {
		cfg, err := kubeevents.Config(o.Kubeconfig)
		if err != nil {
			return nil, err
		}
		if a.events, err = kubeevents.New(cfg, o.Logger); err != nil {
			return nil, err
		}
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
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
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		a.repl, err = replication.New(ctx, replication.Options{Topic: o.ReplicationTopic, Replica: o.ReplicaID, Logger: o.Logger, Registerer: a.registry})
		cancel()
		if err != nil {
			return nil, err
		}
		undo = append(undo, a.repl.Close)
		onChange = a.repl.Enqueue
	}
	store, err := activity.Open(activity.Options{
		OnChange: onChange,
		Dir:      o.DataDir, IdleWindow: o.IdleWindow, FlushInterval: o.FlushInterval, Logger: o.Logger, Now: o.Now,
		OnTransition: a.onTransition, Registerer: a.registry, MaxOrgs: o.MaxOrgs, Replica: o.ReplicaID, MinFreeDisk: uint64(max(0, o.MinFreeDiskMB)) << 20,
	})
	if err != nil {
		return nil, err
	}
	a.store = store
	undo = append(undo, store.Close)
	a.ready.Store(true)
	if a.repl != nil && len(o.Peers) > 0 {
		// Not ready until a peer's snapshot is in. Empty (a new pod, a lost
		// volume): until one is, or there is no peer with any state. With
		// state of its own (a restart): one try, so what it missed while
		// down (messages held for the dead process until their ack deadline)
		// is in before it answers.
		a.ready.Store(false)
		a.empty = store.Len() == 0
		a.peers = replication.Peers{Addrs: o.Peers, Self: o.ReplicaID, Logger: o.Logger}
		if o.PeerTokenFile != "" {
			b, err := os.ReadFile(o.PeerTokenFile)
			if err != nil {
				return nil, fmt.Errorf("--peer-token-file: %w", err)
			}
			a.peers.Token = strings.TrimSpace(string(b))
		}
	}
	if a.ledger, err = usage.Open(store.DB(), usage.Options{Logger: o.Logger, Retention: o.UsageRetention, Registerer: a.registry, Now: o.Now, CheckDisk: store.CheckDisk}); err != nil {
		return nil, err
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
	if err := checkKEDAAddr(a.kedaLis.Addr(), o); err != nil {
		return nil, err
	}
	if a.depth, err = newDepth(o, a.registry); err != nil {
		return nil, err
	}
	var observer scaler.Observer
	if a.events != nil {
		observer = a.events
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
		admit = gate{ready: &a.ready, next: admit}
	}
	kedaServer := scaler.New(scaler.Options{
		MaxStreamAge: o.KEDAMaxConnectionAge,
		Orgs:         store, Backlogs: scalerBacklogs, Now: o.Now, Logger: o.Logger, Done: a.done, Observer: observer,
		Registerer: a.registry, Usage: a.ledger, Admit: admit,
	})
	a.keda = kedaServer
	kedapb.RegisterExternalScalerServer(a.kedaSrv, kedaServer)
	a.apiSrv, a.apiHealth = newServer(grpcMetrics, sec.api, authz, grpc.MaxConcurrentStreams(uint32(o.MaxStreamsPerConn)))
	var syncer api.Syncer
	var hintRepl api.HintReplicator
	if a.repl != nil {
		syncer, hintRepl = a.repl, a.repl
	}
	var snapshot func(func([]*pb.OrgChange) error) error
	if a.repl != nil {
		snapshot = func(send func([]*pb.OrgChange) error) error {
			return store.Export(func(cs []activity.Change) error { return send(replication.ToProto(cs)) })
		}
	}
	apiServer := api.New(api.Options{Sync: syncer, Hints: hintRepl, Snapshot: snapshot, Ready: a.ready.Load, Store: store, Backlogs: apiBacklogs, Explainer: kedaServer, Reports: a.ledger, Now: o.Now, Done: a.done, Replica: o.ReplicaID})
	pb.RegisterActivityServiceServer(a.apiSrv, apiServer)
	pb.RegisterAdminServiceServer(a.apiSrv, apiServer)
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

func withDefaults(o Options) Options {
	o.Listen = cmp.Or(o.Listen, DefaultListen)
	o.APIListen = cmp.Or(o.APIListen, DefaultAPIListen)
	o.MetricsListen = cmp.Or(o.MetricsListen, DefaultMetricsListen)
	o.DataDir = cmp.Or(o.DataDir, DefaultDataDir)
	o.IdleWindow = cmp.Or(o.IdleWindow, DefaultIdleWindow)
	o.FlushInterval = cmp.Or(o.FlushInterval, DefaultFlushInterval)
	o.ShutdownGrace = cmp.Or(o.ShutdownGrace, DefaultShutdownGrace)
	o.PubSub = cmp.Or(o.PubSub, PubSubNone)
	o.Replication = cmp.Or(o.Replication, ReplicationNone)
	o.PubSubListen = cmp.Or(o.PubSubListen, DefaultPubSubListen)
	o.DepthRefresh = cmp.Or(o.DepthRefresh, DefaultDepthRefresh)
	o.DepthMaxAge = cmp.Or(o.DepthMaxAge, DefaultDepthMaxAge)
	o.DepthEmptyAfter = cmp.Or(o.DepthEmptyAfter, DefaultDepthEmptyAfter)
	o.TokensReload = cmp.Or(o.TokensReload, DefaultTokensReload)
	o.UsageRetention = cmp.Or(o.UsageRetention, usage.DefaultRetention)
	o.MaxOrgs = cmp.Or(o.MaxOrgs, DefaultMaxOrgs)
	o.MinFreeDiskMB = cmp.Or(o.MinFreeDiskMB, DefaultMinFreeDiskMB)
	o.MaxStreamsPerConn = cmp.Or(o.MaxStreamsPerConn, DefaultMaxStreamsPerConn)
	o.KEDAMaxConnectionAge = cmp.Or(o.KEDAMaxConnectionAge, DefaultKEDAMaxConnectionAge)
	o.AntiEntropy = cmp.Or(o.AntiEntropy, DefaultAntiEntropy)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReplicaID == "" {
		o.ReplicaID, _ = os.Hostname()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
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
	errc := make(chan error, 2)
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
	if a.repl != nil {
		a.bgWG.Go(func() {
			var hints replication.Hints
			if a.depth != nil {
				hints = a.depth.tracker
			}
			if err := a.repl.Run(bg, a.store, hints); err != nil {
				a.log.Error("replication stopped with an error", "err", err)
			}
		})
		if !a.ready.Load() {
			a.bgWG.Go(func() { a.bootstrap(bg) })
		}
		if len(a.peers.Addrs) > 0 {
			first := a.opts.AntiEntropy
			if !a.empty {
				// Restarted: messages Pub/Sub handed to the dead process are
				// held until their ack deadline (on the emulator, seen never
				// to come back); one early look heals them.
				first = min(first, restartRecheck)
			}
			a.bgWG.Go(func() { replication.AntiEntropy(bg, a.peers, a.store, first, a.opts.AntiEntropy) })
		}
	}
	// Stopped before the store closes, with a last flush.
	a.bgWG.Go(func() { a.ledger.Run(bg, a.opts.FlushInterval, a.opts.Now) })
	a.logSecurity()
	go a.watchHealth(ctx)
	go func() { errc <- serve(a.kedaSrv, a.kedaLis, "KEDA") }()
	go func() { errc <- serve(a.apiSrv, a.apiLis, "API") }()
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
		for _, s := range []*grpc.Server{a.kedaSrv, a.apiSrv} {
			wg.Go(func() { gracefulStop(s, a.opts.ShutdownGrace) })
		}
		wg.Wait()
		_ = a.kedaLis.Close() // already closed when Run served it
		_ = a.apiLis.Close()
		_ = a.metrics.Close()
		_ = a.metricsLn.Close()
		if a.depth != nil {
			a.depth.stop()
		}
		if a.bgEnd != nil {
			a.bgEnd()
			a.bgWG.Wait()
		} else if a.repl != nil {
			_ = a.repl.Close() // never ran
		}
		err = a.store.Close()
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

// registerKept exports how much the scaler keeps per name a caller gives
// (ScaledObjects, workloads, subscriptions), so a leak shows on a graph.
func (a *App) registerKept() {
	kept := func(what string, f func() int) {
		a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "scaler_kept", Help: "What the scaler keeps per name callers give: bounded, and pruned when a ScaledObject goes.",
			ConstLabels: prometheus.Labels{"what": what},
		}, func() float64 { return float64(f()) }))
	}
	kept("explain_scaledobjects", func() int { n, _ := a.keda.Kept(); return n })
	kept("last_answers", func() int { _, n := a.keda.Kept(); return n })
	kept("ledger_workloads", a.ledger.Following)
	if a.depth != nil {
		kept("subscriptions", a.depth.tracker.Len)
	}
	if a.events != nil {
		kept("event_scaledobjects", a.events.Tracked)
	}
	if a.objects != nil {
		kept("cluster_scaledobjects", a.objects.Len)
	}
}

// bootstrap loads a peer's snapshot, then makes this replica ready. An
// empty store retries while peers exist but none is ready; a store with
// state tries once (for up to restartCatchUp) and then answers from its
// own state, so a whole fleet restarting never waits on itself.
func (a *App) bootstrap(ctx context.Context) {
	for {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if !a.empty {
			tctx, cancel = context.WithTimeout(ctx, restartCatchUp)
		}
		_, _, err := replication.Bootstrap(tctx, a.peers, a.store)
		cancel()
		if err == nil || (!a.empty && ctx.Err() == nil) {
			if err != nil {
				a.log.Warn("restarted without a peer's snapshot: answering from this replica's own state while its subscription catches up", "err", err)
			}
			a.ready.Store(true)
			select {
			case a.healthKick <- struct{}{}:
			default:
			}
			if !a.empty {
				a.republish()
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("not ready: no snapshot from a peer yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// republish sends this replica's whole state to the others after a
// restart. A crash can leave on disk changes that were accepted but not yet
// published (and so never acknowledged); merges are maxima and
// last-writer-wins, so sending everything again is harmless and makes the
// fleet agree again.
func (a *App) republish() {
	n := 0
	_ = a.store.Export(func(cs []activity.Change) error {
		for _, c := range cs {
			a.repl.Enqueue(c)
		}
		n += len(cs)
		return nil
	})
	a.log.Info("republished this replica's state after a restart, so changes accepted but not published before it stopped reach the others", "changes", n)
}

// restartCatchUp bounds how long a restarted replica waits for a peer's
// snapshot before it answers from its own state.
const restartCatchUp = 10 * time.Second

// restartRecheck is when a restarted replica first compares its digest
// with a peer's.
const restartRecheck = 3 * time.Second

// gate refuses KEDA's calls while this replica loads its state, then
// defers to next (the cluster's ScaledObjects), if any.
type gate struct {
	ready *atomic.Bool
	next  scaler.Admitter
}

func (g gate) Check(namespace, name string, md map[string]string) error {
	if !g.ready.Load() {
		return scaler.ErrNotReady
	}
	if g.next == nil {
		return nil
	}
	return g.next.Check(namespace, name, md)
}

// onGone drops what was kept for triggers that are gone from the cluster.
func (a *App) onGone(g scaledobjects.Gone) {
	so := g.Key.String()
	a.keda.Forget(so, g.Deleted, g.Metrics)
	for _, m := range g.ObjectMetrics {
		a.ledger.Forget(usage.ID(so, m), a.opts.Now())
	}
	if a.depth != nil {
		for _, sub := range g.Subscriptions {
			a.depth.tracker.Forget(sub)
		}
	}
	if g.Deleted && a.events != nil {
		a.events.Forget(g.Key.Namespace, g.Key.Name)
	}
}

// onTransition sends org transitions to the Events recorder.
func (a *App) onTransition(t activity.Transition) {
	if a.events == nil {
		return
	}
	if t.Woke {
		a.events.OrgWoke(t.Org, string(t.Reason), t.DormantSince)
		return
	}
	a.events.OrgDormant(t.Org, t.LastActivity, t.IdleWindow)
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
