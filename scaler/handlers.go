package scaler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/trigger"
)

// IsActive answers whether the workload should run at all. While the
// backlog cannot be seen it keeps its last answer rather than turning
// false: being blind is not an empty queue.
func (s *Server) IsActive(ctx context.Context, ref *kedapb.ScaledObjectRef) (*kedapb.IsActiveResponse, error) {
	w, err := s.admitted(ref)
	if err != nil {
		return nil, err
	}
	name := w.MetricName()
	a, d, err := s.answer(ctx, ref, w, name)
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
	return &kedapb.IsActiveResponse{Result: active}, nil
}

// GetMetricSpec returns the workload's one metric, with target 1 so the
// metric value is the replica count.
func (s *Server) GetMetricSpec(_ context.Context, ref *kedapb.ScaledObjectRef) (*kedapb.GetMetricSpecResponse, error) {
	w, err := s.admitted(ref)
	if err != nil {
		return nil, err
	}
	if _, _, _, err := s.evaluate(w); err != nil { // names the org, tracks the subscription
		return nil, err
	}
	if err := s.poolExists(w); err != nil {
		return nil, err
	}
	return metricSpec(w), nil
}

func metricSpec(w trigger.Workload) *kedapb.GetMetricSpecResponse {
	return &kedapb.GetMetricSpecResponse{MetricSpecs: []*kedapb.MetricSpec{{
		MetricName: w.MetricName(), TargetSize: 1, TargetSizeFloat: 1,
	}}}
}

// GetMetrics returns the replica count the workload should have.
func (s *Server) GetMetrics(ctx context.Context, req *kedapb.GetMetricsRequest) (*kedapb.GetMetricsResponse, error) {
	w, err := s.admitted(req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	name := w.MetricName()
	if req.GetMetricName() != name {
		return nil, status.Errorf(codes.NotFound, "metricName %q is not this trigger's metric: expected %q (as GetMetricSpec returns)",
			req.GetMetricName(), name)
	}
	a, d, err := s.answer(ctx, req.GetScaledObjectRef(), w, name)
	if err != nil {
		return nil, err
	}
	if a.Rule == decide.RuleBlind {
		return nil, blindError(w, d)
	}
	return &kedapb.GetMetricsResponse{MetricValues: []*kedapb.MetricValue{{
		MetricName: name, MetricValue: a.Replicas, MetricValueFloat: float64(a.Replicas),
	}}}, nil
}

// StreamMetricSpec sends the spec when the stream opens, then holds the
// stream until KEDA leaves: a workload's spec never changes while its
// metadata stays the same.
func (s *Server) StreamMetricSpec(ref *kedapb.ScaledObjectRef, stream kedapb.ExternalScaler_StreamMetricSpecServer) error {
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
func (s *Server) StreamIsActive(ref *kedapb.ScaledObjectRef, stream kedapb.ExternalScaler_StreamIsActiveServer) error {
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
	var poolChanged func() <-chan struct{}
	if w.Pool != "" && s.pools != nil {
		if err := s.poolExists(w); err != nil {
			return err
		}
		poolChanged = func() <-chan struct{} { return s.pools.Changed(w.Pool) }
		if s.targets == nil && ref.GetNamespace() != "" && ref.GetName() != "" {
			id := pool.ID(ref.GetNamespace(), ref.GetName(), w.MetricName())
			if s.polled.saw(id, w, s.now(), 1) {
				defer s.polled.saw(id, w, s.now(), -1)
			}
		}
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
		var seats <-chan struct{}
		if poolChanged != nil {
			seats = poolChanged() // before the answer reads the seat: no change is missed
		}
		a, d, err := s.answer(stream.Context(), ref, w, name)
		if status.Code(err) == codes.NotFound {
			// The subscription does not exist (yet): stay open, inactive,
			// so its creation and first hint are pushed without waiting
			// for KEDA's reconnect backoff.
			a, wasActive = decide.Answer{}, false
		} else if err != nil {
			return err
		}
		if a.Active && !wasActive {
			if err := stream.Send(&kedapb.IsActiveResponse{Result: true}); err != nil {
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
		if next := decide.Earliest(a.NextChange, d.Until); !next.IsZero() {
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
		case <-seats:
		}
	}
}
