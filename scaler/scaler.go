// Package scaler serves KEDA's ExternalScaler gRPC service: it parses each
// trigger's metadata into a workload, reads the org's state and the backlog
// from memory, and answers with decide.Decide. Streams are pushed to the
// moment a workload turns active.
package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/keepalive"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/scaledobjects"
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
	pb.UnimplementedExternalScalerServer
	orgs     Orgs
	backlogs Backlogs
	now      func() time.Time
	log      *slog.Logger
	done     <-chan struct{}
	observer Observer
	usage    Ledger
	admit    Admitter
	idle     IdleTimes
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
		done: o.Done, observer: o.Observer, usage: o.Usage, admit: o.Admit, idle: o.IdleTimes, maxAge: o.MaxStreamAge, metrics: newMetrics(o.Registerer)}
}

// MaxScaledObjects bounds what the scaler remembers per ScaledObject (its
// metadata for explain, its usage ledger): far more than a cluster holds,
// and a cap on what a misbehaving client of the KEDA port can make it keep.
const MaxScaledObjects = 100_000

// maxNameLen is Kubernetes' longest object name (a DNS subdomain).
const maxNameLen = 253

// admitted validates a KEDA request's metadata, then makes sure a real
// ScaledObject's trigger makes it, before anything is kept for it.
func (s *Server) admitted(ref *pb.ScaledObjectRef) (decide.Workload, error) {
	w, err := s.workload(ref)
	if err != nil {
		return w, err
	}
	if s.admit != nil {
		if err := s.admit.Check(ref.GetNamespace(), ref.GetName(), ref.GetScalerMetadata()); err != nil {
			return decide.Workload{}, admitError(err)
		}
	}
	s.noteMetadata(ref)
	return w, nil
}

// ErrNotReady is what an Admitter returns while the scaler cannot answer
// yet (a replica loading its state): KEDA gets Unavailable.
var ErrNotReady = errors.New("this replica is still loading every org's state from a peer: it answers once it has")

// ErrClockSkew is what an Admitter returns while this replica's clock is
// off from the fleet's reference by more than the bound: KEDA gets
// Unavailable, and its round robin never mixes this replica's answers in.
var ErrClockSkew = errors.New("this replica's clock is off from Pub/Sub's by more than --max-clock-skew: it answers once the node's clock is fixed")

func admitError(err error) error {
	if errors.Is(err, scaledobjects.ErrNotSynced) || errors.Is(err, ErrNotReady) || errors.Is(err, ErrClockSkew) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.NotFound, err.Error())
}

// workload validates a request's metadata before anything else.
func (s *Server) workload(ref *pb.ScaledObjectRef) (decide.Workload, error) {
	if ref == nil {
		return decide.Workload{}, status.Error(codes.InvalidArgument, "scaledObjectRef is missing")
	}
	if len(ref.GetNamespace()) > maxNameLen || len(ref.GetName()) > maxNameLen {
		return decide.Workload{}, status.Errorf(codes.InvalidArgument, "scaledObjectRef %q/%q: expected a namespace and name of at most %d characters",
			decide.Clip(ref.GetNamespace()), decide.Clip(ref.GetName()), maxNameLen)
	}
	w, err := decide.ParseMetadata(ref.GetScalerMetadata())
	if err != nil {
		var me *decide.MetadataError
		if errors.As(err, &me) {
			return decide.Workload{}, status.Errorf(codes.InvalidArgument, "%s: %s", refName(ref), err)
		}
		return decide.Workload{}, status.Error(codes.InvalidArgument, err.Error())
	}
	if w.Subscription != "" && s.backlogs == nil {
		return decide.Workload{}, status.Errorf(codes.FailedPrecondition,
			"%s: subscription %s: this scaler runs without a backlog source, so a %s that scales on a subscription cannot be answered: start it with --pubsub=monitoring (or --pubsub=embedded for local work)",
			refName(ref), w.Subscription, w.Kind)
	}
	return w, nil
}

// refName names a request's ScaledObject in errors.
func refName(ref *pb.ScaledObjectRef) string {
	if ref.GetNamespace() == "" && ref.GetName() == "" {
		return "trigger"
	}
	return ref.GetNamespace() + "/" + ref.GetName()
}

// answer computes the decision for w (whose metric is named name) now,
// from memory only, and enters it in the usage ledger under ref. It fails
// with NotFound for a subscription that does not exist.
func (s *Server) answer(ref *pb.ScaledObjectRef, w decide.Workload, name string) (decide.Answer, pubsubdepth.Depth, error) {
	a, o, d, err := s.evaluate(w)
	if err == nil {
		s.observe(ref.GetNamespace(), ref.GetName(), w, name, a, o)
	}
	return a, d, err
}

// observe enters an answer in the usage ledger. Only ScaledObjects count:
// scalerctl ask and explain send no name.
func (s *Server) observe(namespace, name string, w decide.Workload, metric string, a decide.Answer, o activity.Org) {
	if s.usage != nil && !a.Blind() && namespace != "" && name != "" {
		s.usage.Observe(usage.ID(namespace+"/"+name, metric), usage.AnswerOf(w, a, o), a.At())
	}
}

// Verdict is IsActive's answer for one trigger, with what it came from.
type Verdict struct {
	Answer decide.Answer
	Org    activity.Org // zero without an org
	// Active is what IsActive says: while blind, the last answer (false
	// when there is none: KEDA gets an error, told as blind).
	Active bool
	// Reason says why in words; called only for an Event.
	Reason func() string
}

// Answer answers w now as IsActive would, and remembers it as KEDA's last
// answer: for the fleet's leader, which answers every trigger for itself
// (package tally). It fails where KEDA would get an error instead.
func (s *Server) Answer(w decide.Workload) (Verdict, error) {
	if w.Subscription != "" && s.backlogs == nil {
		return Verdict{}, status.Errorf(codes.FailedPrecondition, "subscription %s: no backlog source", w.Subscription)
	}
	a, o, d, err := s.evaluate(w)
	if err != nil {
		return Verdict{}, err
	}
	active, _ := s.remember(w, w.MetricName(), a, d) // blind with no last answer: told as blind
	return Verdict{Answer: a, Org: o, Active: active, Reason: reasonOf(a, d)}, nil
}

// reasonOf says why an answer is what it is: while blind, why the
// backlog cannot be seen.
func reasonOf(a decide.Answer, d pubsubdepth.Depth) func() string {
	if a.Blind() {
		return d.Reason
	}
	return a.Reason
}

// evaluate is answer with the org it read.
func (s *Server) evaluate(w decide.Workload) (decide.Answer, activity.Org, pubsubdepth.Depth, error) {
	var org decide.OrgState
	var o activity.Org
	if w.Org != "" {
		var err error
		if o, err = s.orgs.Sight(w.Org); err != nil {
			return decide.Answer{}, o, pubsubdepth.Depth{}, orgError(err)
		}
		org = orgState(o)
		if w.KeepAlive.On() {
			if org.Plan, err = s.plan(w); err != nil {
				return decide.Answer{}, o, pubsubdepth.Depth{}, err
			}
		}
	}
	var b decide.Backlog
	var d pubsubdepth.Depth
	if w.Subscription != "" {
		d = s.backlogs.Backlog(w.Subscription)
		if err := limitError(d.Err); err != nil {
			return decide.Answer{}, o, d, err
		}
		if d.Exists == pubsubdepth.Missing {
			return decide.Answer{}, o, d, status.Errorf(codes.NotFound, "subscription %s does not exist", w.Subscription)
		}
		b = decide.Backlog{Known: d.Known, Messages: d.Messages, ObservedAt: d.Observed.At}
	}
	return decide.Decide(w, org, b, s.now()), o, d, nil
}

// limitError is ResourceExhausted when err says the subscription cap
// refused a subscription, and nil for any other err (a Depth's fetch
// error is decide's to weigh).
func limitError(err error) error {
	var le *pubsubdepth.LimitError
	if errors.As(err, &le) {
		return status.Error(codes.ResourceExhausted, le.Error())
	}
	return nil
}

// plan is the keep-alive plan of w's policy for its org's idle times.
func (s *Server) plan(w decide.Workload) (keepalive.Plan, error) {
	if s.idle == nil {
		return keepalive.Plan{}, status.Error(codes.FailedPrecondition, "keepAlive: this scaler keeps no idle times to plan from")
	}
	k := w.KeepAlive
	plan, err := s.idle.Plan(w.Org, k.Policy+"/"+k.ColdStart.String(), func(own, fleet *keepalive.History) keepalive.Plan {
		p, _ := keepalive.ParseWithFleet(k.Policy, fleet) // parsed once already, when the metadata was read
		return p.Plan(own, k.ColdStart)
	})
	if err != nil {
		return keepalive.Plan{}, status.Errorf(codes.Unavailable, "keepAlive: %v", err)
	}
	return plan, nil
}

// orgError is an org the scaler will not create, as KEDA gets it.
func orgError(err error) error {
	var limit *activity.LimitError
	if errors.As(err, &limit) {
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func orgState(o activity.Org) decide.OrgState {
	return decide.OrgState{LastActivity: o.LastActivity, ScaleToZeroAllowed: o.ScaleToZeroAllowed, IdleWindow: o.IdleWindow, Schedule: o.WarmSchedule}
}

func blindError(w decide.Workload, d pubsubdepth.Depth) error {
	return status.Errorf(codes.Unavailable, "backlog of subscription %s is unknown: %s", w.Subscription, d.Reason())
}

// IsActive answers whether the workload should run at all. While the
// backlog cannot be seen it keeps its last answer rather than turning
// false: being blind is not an empty queue.
func (s *Server) IsActive(_ context.Context, ref *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	w, err := s.admitted(ref)
	if err != nil {
		return nil, err
	}
	name := w.MetricName()
	a, d, err := s.answer(ref, w, name)
	if err != nil {
		return nil, err
	}
	active, err := s.remember(w, name, a, d)
	s.count(w, active, err)
	if s.observer != nil {
		s.observer.Answered(ref.GetNamespace(), ref.GetName(), active, a.Blind(), reasonOf(a, d))
	}
	if err != nil {
		return nil, err
	}
	return &pb.IsActiveResponse{Result: active}, nil
}

func (s *Server) count(w decide.Workload, active bool, err error) {
	result := "inactive"
	switch {
	case err != nil:
		result = "error"
	case active:
		result = "active"
	}
	s.metrics.answer(w.Kind, result).Inc()
}

// remember keeps the last answer per workload (by its metric name), and
// says what IsActive answers by decide.Hold: while blind, the last answer;
// with none, an error.
func (s *Server) remember(w decide.Workload, name string, a decide.Answer, d pubsubdepth.Depth) (bool, error) {
	last, hasLast := s.lastActive(name)
	active, ok := decide.Hold(a, last, hasLast)
	if !ok {
		return false, blindError(w, d)
	}
	if !a.Blind() && (!hasLast || last != active) {
		s.last.store(name, active)
	}
	return active, nil
}

// lastActive is the last IsActive answer given for the workload whose
// metric is name, if any.
func (s *Server) lastActive(name string) (active, ok bool) {
	v, ok := s.last.load(name)
	if !ok {
		return false, false
	}
	return v.(bool), true
}

// GetMetricSpec returns the workload's one metric, with target 1 so the
// metric value is the replica count.
func (s *Server) GetMetricSpec(_ context.Context, ref *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	w, err := s.admitted(ref)
	if err != nil {
		return nil, err
	}
	if _, _, _, err := s.evaluate(w); err != nil { // names the org, tracks the subscription
		return nil, err
	}
	return metricSpec(w), nil
}

func metricSpec(w decide.Workload) *pb.GetMetricSpecResponse {
	return &pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{{
		MetricName: w.MetricName(), TargetSize: 1, TargetSizeFloat: 1,
	}}}
}

// GetMetrics returns the replica count the workload should have.
func (s *Server) GetMetrics(_ context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	w, err := s.admitted(req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	name := w.MetricName()
	if req.GetMetricName() != name {
		return nil, status.Errorf(codes.NotFound, "metricName %q is not this trigger's metric: expected %q (as GetMetricSpec returns)",
			req.GetMetricName(), name)
	}
	a, d, err := s.answer(req.GetScaledObjectRef(), w, name)
	if err != nil {
		return nil, err
	}
	if a.Rule == decide.RuleBlind {
		return nil, blindError(w, d)
	}
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{
		MetricName: name, MetricValue: a.Replicas, MetricValueFloat: float64(a.Replicas),
	}}}, nil
}

// StreamMetricSpec sends the spec when the stream opens, then holds the
// stream until KEDA leaves: a workload's spec never changes while its
// metadata stays the same.
func (s *Server) StreamMetricSpec(ref *pb.ScaledObjectRef, stream pb.ExternalScaler_StreamMetricSpecServer) error {
	w, err := s.admitted(ref)
	if err != nil {
		return err
	}
	if err := stream.Send(metricSpec(w)); err != nil {
		return fmt.Errorf("send metric spec: %w", err)
	}
	select {
	case <-stream.Context().Done():
	case <-s.done:
	case <-s.aged():
	}
	return nil
}

// aged fires when a stream opened now has lived its age; never without
// one.
func (s *Server) aged() <-chan time.Time {
	if s.maxAge <= 0 {
		return nil
	}
	jitter := time.Duration(rand.Int64N(int64(s.maxAge)/5+1)) - s.maxAge/10
	return time.After(s.maxAge + jitter)
}

// StreamIsActive pushes true when the workload turns active (and once on
// open if it is active then). It never pushes false: KEDA ignores it, and
// every true restarts KEDA's cooldown, so only transitions are sent.
func (s *Server) StreamIsActive(ref *pb.ScaledObjectRef, stream pb.ExternalScaler_StreamIsActiveServer) error {
	w, err := s.admitted(ref)
	if err != nil {
		return err
	}
	var orgChanged, backlogChanged <-chan struct{}
	if w.Org != "" {
		watch, err := s.orgs.Watch(w.Org)
		if err != nil {
			return orgError(err)
		}
		defer watch.Stop()
		orgChanged = watch.C()
	}
	if w.Subscription != "" {
		watch, err := s.backlogs.Watch(w.Subscription)
		if err != nil {
			return limitError(err)
		}
		defer watch.Stop()
		backlogChanged = watch.C()
	}
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	log := s.log.With("namespace", ref.GetNamespace(), "scaledobject", ref.GetName(), "workload", w.Kind, "org", w.Org)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	aged := s.aged()
	name := w.MetricName()
	wasActive := false
	var activeUntil time.Time // when the last active answer was due to end
	for {
		if wasActive && !activeUntil.IsZero() && !s.now().Before(activeUntil) {
			// That active period is over, whether or not this stream saw the
			// instant it ended: being active now is a new activation.
			wasActive = false
		}
		a, d, err := s.answer(ref, w, name)
		if status.Code(err) == codes.NotFound {
			// The subscription does not exist (yet): stay open, inactive,
			// so its creation and first hint are pushed without waiting
			// for KEDA's reconnect backoff.
			a, wasActive = decide.Answer{}, false
		} else if err != nil {
			return err
		}
		if a.Active && !wasActive {
			if err := stream.Send(&pb.IsActiveResponse{Result: true}); err != nil {
				return fmt.Errorf("push active: %w", err)
			}
			s.metrics.pushes.Inc()
			log.Debug("pushed active", "rule", a.Rule, "reason", a.Reason())
		}
		// Blind keeps the last state, by the rule IsActive uses.
		wasActive, _ = decide.Hold(a, wasActive, true)
		if !a.Blind() {
			activeUntil = time.Time{}
			if a.Active {
				activeUntil = a.NextChange
			}
		}
		var due <-chan time.Time
		if next := earliest(a.NextChange, d.Until); !next.IsZero() {
			timer.Reset(next.Sub(s.now()))
			due = timer.C
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.done:
			return nil
		case <-aged:
			return nil // a clean end: KEDA reconnects, perhaps to another replica
		case <-orgChanged:
		case <-backlogChanged:
		case <-due:
		}
	}
}

// earliest returns the earlier of two instants, ignoring zero ones.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
