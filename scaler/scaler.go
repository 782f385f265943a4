// Package scaler serves KEDA's ExternalScaler gRPC service: it parses each
// trigger's metadata into a workload, reads the org's state and the backlog
// from memory, and answers with decide.Decide. Streams are pushed to the
// moment a workload turns active.
package scaler

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/keepalive"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/usage"
)

// Orgs is the org state the scaler reads; activity.Store provides it.
type Orgs interface {
	// Sight returns the org, creating it as active if it is new; past the
	// org limit a new one is refused with *activity.LimitError.
	Sight(id string) (activity.Org, error)
	// Watch subscribes to the org's changes, creating it as Sight does.
	Watch(id string) (*activity.Watch, error)
}

// Backlogs gives the backlog of a subscription from memory;
// pubsubdepth.Tracker provides it. Without a backlog source it is nil, and
// workloads that need a backlog are refused.
type Backlogs interface {
	Backlog(subscription string) pubsubdepth.Depth
	// Watch fails with a *pubsubdepth.LimitError past the subscription cap,
	// as Backlog's Depth does.
	Watch(subscription string) (*pubsubdepth.Watch, error)
}

// Observer is told of every IsActive answer, per ScaledObject; the Events
// recorder uses it. It must not block.
type Observer interface {
	Answered(namespace, name string, active, blind bool, reason func() string)
}

// Admitter says whether a request comes from a real ScaledObject's
// trigger; scaledobjects.Registry provides it. Nil admits every request
// (the embedded default, with no cluster).
type Admitter interface {
	Check(namespace, name string, metadata map[string]string) error
}

// IdleTimes gives an org's idle-time histogram and the fleet's, for a
// trigger's keep-alive policy; idletimes.Store provides it. Nil: triggers
// with keepAlive are refused.
type IdleTimes interface {
	History(org string) (own, fleet keepalive.History, err error)
	// Plan is compute's plan from org's histogram and the fleet's, made
	// again only when either changed; key names the rest it depends on.
	Plan(org, key string, compute func(own, fleet *keepalive.History) keepalive.Plan) (keepalive.Plan, error)
}

// Ledger keeps the GPU-hours ledger from every answer; usage.Ledger
// provides it.
type Ledger interface {
	Observe(id string, a usage.Answer, now time.Time)
}

// Server implements KEDA's ExternalScaler service.
type Server struct {
	kedapb.UnimplementedExternalScalerServer
	orgs     Orgs
	backlogs Backlogs
	now      func() time.Time
	log      *slog.Logger
	done     <-chan struct{}
	observer Observer
	usage    Ledger
	admit    Admitter
	idle     IdleTimes
	pools    Pools
	targets  Targets
	polled   members // pooled triggers KEDA asked about, without a cluster
	demandMu sync.Mutex
	demands  map[string]int64 // member ID → its last demand, kept while blind
	maxAge   time.Duration
	metrics  *metrics

	// Read on every call and rarely changed, so lock-free to read.
	last capped // metric name → the last IsActive answer (bool), kept while blind
	seen capped // "ns/name" → the last metadata KEDA sent (map[string]string), for explain
}

// capped is a concurrent map that holds at most MaxScaledObjects keys, so
// a client inventing names cannot grow it without bound.
type capped struct {
	m sync.Map
	n atomic.Int64
}

func (c *capped) load(k string) (any, bool) { return c.m.Load(k) }

// remove deletes k.
func (c *capped) remove(k string) {
	if _, loaded := c.m.LoadAndDelete(k); loaded {
		c.n.Add(-1)
	}
}

// store sets k, unless k is new and the map is full.
func (c *capped) store(k string, v any) {
	if _, loaded := c.m.Swap(k, v); !loaded && c.n.Add(1) > MaxScaledObjects {
		c.m.Delete(k)
		c.n.Add(-1)
	}
}

// Options configure a Server.
type Options struct {
	Orgs     Orgs
	Backlogs Backlogs // nil: no backlog source yet
	Now      func() time.Time
	Logger   *slog.Logger
	// Done ends every open stream when closed, so a graceful stop does not
	// wait for KEDA to hang up.
	Done <-chan struct{}
	// Observer, when set, is told of every IsActive answer. In a fleet it
	// is not set: each replica sees only the calls that reach it, so the
	// leader's tally tells Events instead (package tally).
	Observer Observer
	// Registerer, when set, gets the service's metrics.
	Registerer prometheus.Registerer
	// Usage, when set, is told of every answer; in a fleet, not set, as
	// Observer.
	Usage Ledger
	// Admit, when set, refuses every request that no real ScaledObject's
	// trigger makes, before anything is kept for it.
	Admit Admitter
	// MaxStreamAge, when set, ends each stream cleanly after about this
	// long (±10%), before its connection's own age cuts it: KEDA's client
	// resets its reconnect backoff only after a clean end.
	MaxStreamAge time.Duration
	// IdleTimes, when set, plans the workloads of triggers with a
	// keep-alive policy; without it they are refused.
	IdleTimes IdleTimes
	// Pools, when set, seats the triggers that name a GPU pool; without
	// it they are refused. Targets, when set, lists a pool's members from
	// the cluster; without it they are the triggers KEDA asks about.
	Pools   Pools
	Targets Targets
}

// New returns a Server.
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{orgs: o.Orgs, backlogs: o.Backlogs, now: o.Now, log: o.Logger.With("component", "scaler"),
		done: o.Done, observer: o.Observer, usage: o.Usage, admit: o.Admit, idle: o.IdleTimes, maxAge: o.MaxStreamAge, metrics: newMetrics(o.Registerer),
		pools: o.Pools, targets: o.Targets, demands: map[string]int64{}}
}
