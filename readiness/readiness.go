// Package readiness says whether this replica may answer KEDA: it holds
// every org's state (not loading a peer's snapshot), its clock is within
// --max-clock-skew, and the app's other conditions hold (ScaledObjects
// read, backlog data fresh). It refuses KEDA's calls while it may not, so
// KEDA's fallback engages rather than a wrong answer, and keeps the KEDA
// port's health (readiness probes) in step, looked at again the moment
// anything changes.
package readiness

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Why a replica refuses KEDA's calls; the scaler answers them with
// Unavailable.
var (
	ErrLoading   = errors.New("this replica is still loading every org's state from a peer: it answers once it has")
	ErrClockSkew = errors.New("this replica's clock is off from Pub/Sub's by more than --max-clock-skew: it answers once the node's clock is fixed")
)

// Condition is one more thing the KEDA port's health needs.
type Condition struct {
	Why string      // said while it does not hold
	OK  func() bool // nil: always holds
}

// Gate is this replica's readiness. The zero value is not usable: New.
type Gate struct {
	loading atomic.Bool // some orgs' state is missing
	skewed  atomic.Bool // this replica's clock is off by more than the bound
	kick    chan struct{}
	conds   []Condition
	log     *slog.Logger
}

// New returns a gate that holds every org's state until Loading, with
// conds for the health besides.
func New(log *slog.Logger, conds ...Condition) *Gate {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{kick: make(chan struct{}, 1), conds: conds, log: log.With("component", "readiness")}
}

// Loading marks some orgs' state as missing (a snapshot to load, a
// subscription lost) until Loaded.
func (g *Gate) Loading() { g.loading.Store(true); g.changed() }

// Loaded marks this replica as holding every org's state.
func (g *Gate) Loaded() { g.loading.Store(false); g.changed() }

// Skewed says whether this replica's clock is off by more than the bound.
func (g *Gate) Skewed(skewed bool) { g.skewed.Store(skewed); g.changed() }

// HoldsAll reports whether this replica holds every org's state.
func (g *Gate) HoldsAll() bool { return !g.loading.Load() }

// Current reports whether this replica's state can be given to a peer:
// it holds every org's, and its clock is within the bound.
func (g *Gate) Current() bool { return !g.loading.Load() && !g.skewed.Load() }

func (g *Gate) changed() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// Admitter is what decides next whether a request is admitted
// (scaledobjects.Registry: a real ScaledObject's trigger).
type Admitter interface {
	Check(namespace, name string, md map[string]string) error
}

// Admit refuses KEDA's calls while this replica is loading or skewed,
// then defers to next, if any.
func (g *Gate) Admit(next Admitter) Admitter { return admit{g, next} }

type admit struct {
	g    *Gate
	next Admitter
}

func (a admit) Check(namespace, name string, md map[string]string) error {
	switch {
	case a.g.loading.Load():
		return ErrLoading
	case a.g.skewed.Load():
		return ErrClockSkew
	case a.next == nil:
		return nil
	}
	return a.next.Check(namespace, name, md)
}

// Register exports the gate as orgscaler_ready: 1 while KEDA's calls are
// answered, 0 while they get Unavailable (what the not-ready alert reads).
func (g *Gate) Register(reg prometheus.Registerer) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orgscaler_ready",
		Help: "1 while this replica answers KEDA (every org's state held, clock within --max-clock-skew, ScaledObjects read, backlog fresh); 0 while KEDA's calls get Unavailable, the log says why."},
		func() float64 {
			if g.why() == "" {
				return 1
			}
			return 0
		}))
}

// why says why the port is not ready ("" when it is).
func (g *Gate) why() string {
	switch {
	case g.loading.Load():
		return "loading every org's state from a peer"
	case g.skewed.Load():
		return "this replica's clock is off from Pub/Sub's by more than --max-clock-skew"
	}
	for _, c := range g.conds {
		if c.OK != nil && !c.OK() {
			return c.Why
		}
	}
	return ""
}

// Watch keeps services' status on h SERVING exactly while the gate is
// open, looking every second and at once on a change, until ctx ends.
func (g *Gate) Watch(ctx context.Context, h *health.Server, services ...string) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	for {
		st, why := healthpb.HealthCheckResponse_SERVING, g.why()
		if why != "" {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if st != last {
			for _, svc := range services {
				h.SetServingStatus(svc, st)
			}
			switch {
			case last == healthpb.HealthCheckResponse_SERVICE_UNKNOWN:
			case st == healthpb.HealthCheckResponse_SERVING:
				g.log.Info("KEDA port ready", "status", st)
			default:
				g.log.Warn("KEDA port not ready", "status", st, "why", why)
			}
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.kick:
		}
	}
}
