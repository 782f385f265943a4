package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/api"
	"github.com/orgscaler/orgscaler/auth"
	"github.com/orgscaler/orgscaler/clock"
	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/idletimes"
	"github.com/orgscaler/orgscaler/knative"
	"github.com/orgscaler/orgscaler/kubeevents"
	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/pools"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/readiness"
	"github.com/orgscaler/orgscaler/replicated"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/storage"
	"github.com/orgscaler/orgscaler/usage"
	"github.com/orgscaler/orgscaler/version"
)

// part is one thing New opens, in order, and what closes it again when a
// later part fails (nil: nothing to close).
type part struct {
	name string
	open func() (closer func() error, err error)
}

// parts are New's steps; each is wiring only.
func (a *App) parts() []part {
	return []part{
		{"security", a.openSecurity},
		{"cluster", a.openCluster},
		{"replication", a.openReplication},
		{"storage", a.openStorage},
		{"stores", a.openStores},
		{"knative", a.openKnative},
		{"listeners", a.openListeners},
		{"backlog", a.openBacklog},
		{"feed", a.openFeed},
		{"servers", a.openServers},
		{"subscriptions", a.subscribe},
	}
}

// errFailAt is the failure Options.failAt injects.
var errFailAt = errors.New("failed on purpose (test)")

// New opens every part of the scaler and binds its ports, so Addr and
// APIAddr are known before Run. On error, every part opened so far is
// closed again, last first: a retry on the same ports and data dir works.
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
	a := &App{opts: o, log: o.Logger.With("component", "app"), done: make(chan struct{}), registry: registry, clock: clk}
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	version.Get().Register(a.registry)
	a.gate = a.newGate()
	a.kinds = replication.NewKinds(o.Now, o.MaxClockSkew)
	a.gate.Register(a.registry)
	a.bg, a.replG, a.eventsG = newGroup(), newGroup(), newGroup()
	for _, p := range a.parts() {
		closer, err := p.open()
		if err == nil && o.failAt == p.name {
			err = fmt.Errorf("%s: %w", p.name, errFailAt)
		}
		if closer != nil {
			a.closers = append(a.closers, closer)
		}
		if err != nil {
			_ = a.closeParts()
			return nil, err
		}
	}
	return a, nil
}

// closeParts closes what New opened, last first: on New's failure, and
// at the stop of an App that never ran.
func (a *App) closeParts() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	return errors.Join(errs...)
}

// newGate is this replica's readiness, with the conditions of the parts
// it has (read when the health is looked at, once every part is open).
func (a *App) newGate() *readiness.Gate {
	return readiness.New(a.opts.Logger,
		readiness.Condition{Why: "ScaledObjects and ScaledJobs not yet read from the cluster", OK: func() bool { return a.objects == nil || a.objects.Synced() }},
		readiness.Condition{Why: "backlog data not fresh", OK: func() bool { return a.depth == nil || a.depth.tracker.Fresh() }})
}

func (a *App) openSecurity() (func() error, error) {
	sec, err := newSecurity(a.opts, a.registry)
	a.sec = sec
	return nil, err
}

// openCluster makes the cluster's clients, with --kubeconfig or
// --in-cluster; nothing talks to the cluster before Run.
func (a *App) openCluster() (func() error, error) {
	o := a.opts
	if o.Kubeconfig == "" && !o.InCluster {
		return nil, nil
	}
	cfg, err := kubeevents.Config(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	a.kube = cfg
	if a.events, err = kubeevents.New(cfg, o.Logger, a.objectsOf); err != nil {
		return nil, err
	}
	closer := func() error { a.events.Close(); return nil }
	if a.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return closer, fmt.Errorf("kubernetes client: %w", err)
	}
	a.objects, err = scaledobjects.New(a.dyn, scaledobjects.Options{Logger: o.Logger, OnGone: a.onGone})
	return closer, err
}

func (a *App) openReplication() (func() error, error) {
	o := a.opts
	if o.Replication != ReplicationPubSub {
		return nil, nil
	}
	var err error
	if a.peers, err = newPeers(o); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.repl, err = replication.New(ctx, replication.Options{Topic: o.ReplicationTopic, Replica: o.ReplicaID, Logger: o.Logger, Registerer: a.registry, Now: o.Now, Wait: o.ReplicationWait,
		Key: replication.KeyFrom(a.peers.Token), MaxSkew: o.MaxClockSkew, OnSkew: a.gate.Skewed, Kinds: a.kinds})
	if err != nil {
		return nil, err
	}
	return a.repl.Close, nil
}

func (a *App) openStorage() (func() error, error) {
	o := a.opts
	db, err := storage.Open(storage.Options{Dir: o.DataDir, Logger: o.Logger, Registerer: a.registry, MinFreeDisk: uint64(max(0, o.MinFreeDiskMB)) << 20})
	if err != nil {
		return nil, err
	}
	a.db = db
	return db.Close, nil
}

// openStores opens the stores on the database: orgs, their history and
// idle times, the GPU-hours ledger and the GPU pools.
func (a *App) openStores() (func() error, error) {
	o := a.opts
	// Every kind, for snapshots and backups; published with replication.
	// The ledger's hours are the fleet's, or this scaler's alone: not
	// those of replicas that each count their own (no cluster, no leader).
	out := replicated.Register(a.kinds, a.repl == nil || a.inFleet(), a.repl != nil)
	store, err := activity.Open(activity.Options{DB: a.db, OnChange: out.OnChange(), IdleWindow: o.IdleWindow, FlushInterval: o.FlushInterval,
		Logger: o.Logger, Now: o.Now, Registerer: a.registry, MaxOrgs: o.MaxOrgs, UnseenDormant: o.UnseenOrgs == UnseenDormant, Replica: o.ReplicaID, MaxClockSkew: o.MaxClockSkew})
	if err != nil {
		return nil, err
	}
	a.store = store
	if a.events != nil {
		// Whole already: told of the orgs that wake or sleep while the
		// rest opens. (The tally and the actuator look at every org when
		// they start.)
		store.Subscribe(activity.Subscriber{Transition: a.events.Transition})
	}
	holds := func(org string) bool { _, ok := store.Get(org); return ok }
	a.history = history.Open(history.Options{DB: a.db.Badger(), Logger: o.Logger, OnChange: out.OnDay(), Holds: holds, CheckDisk: a.db.CheckDisk, Now: o.Now})
	if a.idle, err = idletimes.Open(idletimes.Options{DB: a.db.Badger(), Replica: o.ReplicaID, Logger: o.Logger,
		OnUpdate: store.Notify, CheckDisk: a.db.CheckDisk, OnChange: out.OnIdle(), Holds: holds}); err != nil {
		return store.Close, err
	}
	if a.ledger, err = usage.Open(a.db.Badger(), usage.Options{Logger: o.Logger, Retention: o.UsageRetention, Registerer: a.registry, Now: o.Now,
		CheckDisk: a.db.CheckDisk, OnFlush: out.OnFlush()}); err != nil {
		return store.Close, err
	}
	if a.repl != nil && len(o.Peers) > 0 {
		// Not ready until Join has brought this replica level with its
		// peers (replication.Replicator.Join says how).
		a.gate.Loading()
		a.empty = store.Len() == 0
	}
	if a.pools, err = pools.Open(pools.Options{DB: a.db.Badger(), Replica: o.ReplicaID, Now: o.Now, MaxClockSkew: o.MaxClockSkew,
		CheckDisk: a.db.CheckDisk, OnChange: out.OnPool(), Logger: o.Logger}); err != nil {
		return store.Close, err
	}
	out.Serve(store, a.idle, a.history, a.ledger, a.pools)
	return store.Close, nil
}

// openKnative keeps labelled Knative Services at their orgs' warmth
// (--knative). In a fleet only the leader acts (a fleet duty).
func (a *App) openKnative() (func() error, error) {
	if !a.opts.Knative {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ko := knative.Options{Dynamic: a.dyn, Logger: a.opts.Logger, Registerer: a.registry, Now: a.opts.Now, Org: a.store.Sight, Ledger: a.ledger}
	if a.events != nil {
		ko.Events = a.events
	}
	k, err := knative.New(ctx, ko)
	if err != nil {
		return nil, err
	}
	a.knative = k
	return func() error { k.Close(); return nil }, nil
}

func (a *App) openListeners() (func() error, error) {
	o := a.opts
	var opened []net.Listener
	closer := func() error {
		for _, l := range opened {
			_ = l.Close()
		}
		return nil
	}
	for _, l := range []struct {
		lis  *net.Listener
		addr string
		what string
	}{{&a.kedaLis, o.Listen, "KEDA"}, {&a.apiLis, o.APIListen, "the API"}, {&a.metricsLn, o.MetricsListen, "metrics"}} {
		lis, err := net.Listen("tcp", l.addr)
		if err != nil {
			return closer, fmt.Errorf("listen for %s on %s: %w", l.what, l.addr, err)
		}
		*l.lis = lis
		opened = append(opened, lis)
	}
	if err := a.sec.checkAPIAddr(a.apiLis.Addr(), o); err != nil {
		return closer, err
	}
	if err := checkKEDAAddr(a.kedaLis.Addr(), o); err != nil {
		return closer, err
	}
	conns, err := apiConnLimit(o.APIMaxConnections)
	if err != nil {
		return closer, err
	}
	a.apiLis = netutil.LimitListener(a.apiLis, conns)
	return closer, nil
}

func (a *App) openBacklog() (func() error, error) {
	d, err := newDepth(a.opts, a.registry)
	if err != nil || d == nil {
		return nil, err
	}
	a.depth = d
	return func() error { d.stop(); return nil }, nil
}

func (a *App) openFeed() (func() error, error) {
	f, err := a.newFeed()
	if err != nil || f == nil {
		return nil, err
	}
	a.feed = f
	return f.Close, nil
}

// openServers builds KEDA's service, the API and /metrics on the bound
// ports; they serve from Run.
func (a *App) openServers() (func() error, error) {
	o := a.opts
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
	authz := a.sec.authorizer(a.registry)
	a.kedaSrv, a.health = newServer(grpcMetrics, a.sec.keda, nil, grpc.MaxConcurrentStreams(uint32(o.MaxStreamsPerConn)),
		// KEDA's client re-resolves the scaler's address only when a
		// connection ends: an age makes it find new replicas. The grace
		// outlasts any stream, which ends cleanly by itself first.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: o.KEDAMaxConnectionAge, MaxConnectionAgeGrace: o.KEDAMaxConnectionAge * 6 / 5}))
	var admit scaler.Admitter
	if a.objects != nil {
		admit = a.objects
	}
	if a.repl != nil {
		admit = a.gate.Admit(admit)
	}
	a.poolLoop = newPoolLoop(a.pools, func(now time.Time) map[string][]pool.Want { return a.keda.PoolWants(now) }, o.Now, a.events)
	a.poolLoop.Register(a.registry)
	var targets scaler.Targets
	if a.objects != nil {
		targets = a.objects
	}
	a.keda = scaler.New(scaler.Options{
		MaxStreamAge: o.KEDAMaxConnectionAge,
		Orgs:         a.store, Backlogs: scalerBacklogs, Now: o.Now, Logger: o.Logger, Done: a.done, Observer: observer,
		Registerer: a.registry, Usage: ledger, Admit: admit, IdleTimes: a.idle, Pools: a.poolLoop, Targets: targets,
	})
	a.fleet = a.newFleet(a.keda)
	kedapb.RegisterExternalScalerServer(a.kedaSrv, a.keda)
	a.apiSrv, a.apiHealth = newServer(grpcMetrics, nil, authz) // TLS is apiHTTP's
	var repl api.Replicator
	if a.repl != nil {
		repl = a.repl
	}
	apiServer := api.New(api.Options{Replication: repl, Snapshot: a.kinds.Snapshot, Restore: a.kinds.Restore, Ready: a.gate.Current, Store: a.store, Backlogs: apiBacklogs, Explainer: a.keda,
		Reports: a.ledger, Now: o.Now, Done: a.done, Replica: o.ReplicaID, History: a.history, Knative: a.knativeServices(),
		MaxClockSkew: o.MaxClockSkew, MaxActivityAge: o.IdleWindow, Pools: a.pools, PoolStates: a.poolLoop, Digest: a.digest})
	pb.RegisterActivityServiceServer(a.apiSrv, apiServer)
	pb.RegisterAdminServiceServer(a.apiSrv, apiServer)
	a.apiHTTP = newAPIServer(a.apiSrv, apiServer.Connect(MaxMessageSize), authz, a.sec.api, o.MaxStreamsPerConn, o.APIIdleTimeout)
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
	return nil, nil
}

// subscribe tells each consumer of what happens to orgs, now that every
// one is whole.
func (a *App) subscribe() (func() error, error) {
	a.store.Subscribe(activity.Subscriber{Activity: a.idle.Activity, Deleted: a.idle.Forget})
	a.store.Subscribe(activity.Subscriber{Activity: a.history.Activity, Deleted: a.history.Forget})
	if k := a.knative; k != nil {
		// A deleted org's Services, still labelled, bring it back as new.
		a.store.Subscribe(activity.Subscriber{Transition: func(t activity.Transition) { k.OrgChanged(t.Org) }, Deleted: k.OrgChanged})
	}
	if t := a.tally; t != nil {
		a.store.Subscribe(activity.Subscriber{Transition: func(tr activity.Transition) { t.Org(tr.Org) }})
	}
	return nil, nil
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
