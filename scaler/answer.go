package scaler

import (
	"context"
	"errors"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/keepalive"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/trigger"
	"github.com/orgscaler/orgscaler/usage"
)

// answer computes the decision for w (whose metric is named name) now,
// from memory only (capped by its pool's share at its last turn), and
// enters it in the usage ledger under ref. It fails with NotFound for a
// subscription that does not exist, and FailedPrecondition for a pool
// that does not.
func (s *Server) answer(ctx context.Context, ref *kedapb.ScaledObjectRef, w trigger.Workload, name string) (decide.Answer, pubsubdepth.Depth, error) {
	a, o, d, err := s.evaluate(w)
	if err == nil {
		a, err = s.pooled(ctx, ref.GetNamespace(), ref.GetName(), w, a)
	}
	if err == nil {
		s.observe(ref.GetNamespace(), ref.GetName(), w, name, a, o)
	}
	return a, d, err
}

// observe enters an answer in the usage ledger. Only ScaledObjects count:
// scalerctl ask and explain send no name.
func (s *Server) observe(namespace, name string, w trigger.Workload, metric string, a decide.Answer, o activity.Org) {
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

// Answer answers w, a trigger of the ScaledObject namespace/name, now as
// IsActive would, and remembers it as KEDA's last answer: for the fleet's
// leader, which answers every trigger for itself (package tally). It
// fails where KEDA would get an error instead.
func (s *Server) Answer(namespace, name string, w trigger.Workload) (Verdict, error) {
	if w.Subscription != "" && s.backlogs == nil {
		return Verdict{}, status.Errorf(codes.FailedPrecondition, "subscription %s: no backlog source", w.Subscription)
	}
	a, o, d, err := s.evaluate(w)
	if err == nil {
		a, err = s.pooled(noWait, namespace, name, w, a)
	}
	if err != nil {
		return Verdict{}, err
	}
	active, _ := s.remember(w, w.MetricName(), a, d) // blind with no last answer: told as blind
	return Verdict{Answer: a, Org: o, Active: active, Reason: reasonOf(a, d)}, nil
}

// noWait is a done context: the tally never waits for a pool to seat a
// new member (KEDA's own call waits, and is counted next time).
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// reasonOf says why an answer is what it is: while blind, why the
// backlog cannot be seen.
func reasonOf(a decide.Answer, d pubsubdepth.Depth) func() string {
	if a.Blind() {
		return d.Reason
	}
	return a.Reason
}

// evaluate is the answer for w now, without its pool, with the org it
// read.
func (s *Server) evaluate(w trigger.Workload) (decide.Answer, activity.Org, pubsubdepth.Depth, error) {
	return s.evaluateAt(w, s.now())
}

// evaluateAt is evaluate at now.
func (s *Server) evaluateAt(w trigger.Workload, now time.Time) (decide.Answer, activity.Org, pubsubdepth.Depth, error) {
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
	return decide.Decide(w, org, b, now), o, d, nil
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
func (s *Server) plan(w trigger.Workload) (keepalive.Plan, error) {
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

func blindError(w trigger.Workload, d pubsubdepth.Depth) error {
	return status.Errorf(codes.Unavailable, "backlog of subscription %s is unknown: %s", w.Subscription, d.Reason())
}

func (s *Server) count(w trigger.Workload, active bool, err error) {
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
func (s *Server) remember(w trigger.Workload, name string, a decide.Answer, d pubsubdepth.Depth) (bool, error) {
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
