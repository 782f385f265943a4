package scaler

import (
	"maps"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/explain"
)

// noteMetadata records the metadata of the ScaledObject KEDA asked about.
func (s *Server) noteMetadata(ref *kedapb.ScaledObjectRef) {
	if ref.GetNamespace() == "" || ref.GetName() == "" {
		return
	}
	k := ref.GetNamespace() + "/" + ref.GetName()
	if old, ok := s.seen.load(k); ok && maps.Equal(old.(map[string]string), ref.GetScalerMetadata()) {
		return
	}
	// Past MaxScaledObjects a new one is not kept; explain by metadata
	// still works for it.
	s.seen.store(k, maps.Clone(ref.GetScalerMetadata()))
}

// Explain evaluates a trigger's metadata now, without changing what KEDA
// is told. An org never seen before is created, as KEDA's first call would.
func (s *Server) Explain(md map[string]string) (explain.Explanation, error) {
	w, err := s.workload(&kedapb.ScaledObjectRef{ScalerMetadata: md})
	if err != nil {
		return explain.Explanation{}, err
	}
	a, o, d, err := s.evaluate(w)
	e := explain.Explanation{Metadata: md, Workload: w, Answer: a, Active: a.Active, Err: err}
	if w.Org != "" {
		e.Org = &o
	}
	if w.Subscription != "" {
		e.Backlog = &d
	}
	if w.KeepAlive.On() && s.idle != nil {
		if own, fleet, err := s.idle.History(w.Org); err == nil {
			e.IdleTimes, e.FleetIdleTimes = own.Known(), fleet.Known()
		} else {
			s.log.Warn("explain: idle times not read; shown as none", "org", w.Org, "err", err)
		}
	}
	if err == nil && a.Rule == decide.RuleBlind {
		e.Err = blindError(w, d) // GetMetrics
		last, hasLast := s.lastActive(w.MetricName())
		active, ok := decide.Hold(a, last, hasLast)
		e.Active = ok && active
	}
	return e, nil
}

// Forget drops what the scaler keeps for a trigger that is gone: the
// metadata of the ScaledObject scaledObject ("namespace/name") when it is
// deleted, and the last answers of metrics no trigger names any more.
func (s *Server) Forget(scaledObject string, deleted bool, metrics []string) {
	if deleted {
		s.seen.remove(scaledObject)
	}
	for _, m := range metrics {
		s.last.remove(m)
	}
}

// Kept is how many ScaledObjects' metadata and workloads' last answers
// the scaler keeps: bounded, and pruned as triggers go.
func (s *Server) Kept() (scaledObjects, lastAnswers int) {
	return int(s.seen.n.Load()), int(s.last.n.Load())
}

// ExplainScaledObject explains the trigger of a ScaledObject KEDA has asked
// about ("namespace/name"), with the metadata KEDA last sent.
func (s *Server) ExplainScaledObject(nsName string) (explain.Explanation, error) {
	v, ok := s.seen.load(nsName)
	if !ok {
		return explain.Explanation{}, status.Errorf(codes.NotFound,
			"scaled_object %q: KEDA has not asked about it since the scaler started (give its metadata instead)", nsName)
	}
	e, err := s.Explain(v.(map[string]string))
	if err != nil || e.Workload.Pool == "" || e.Err != nil {
		return e, err
	}
	// Its answer as KEDA gets it: capped by its seat in its pool (none
	// shown before the pool's first turn with it).
	ns, name := splitObject(nsName)
	seat, waiting, err := s.seatOf(noWait, ns, name, e.Workload)
	switch {
	case status.Code(err) == codes.Canceled:
	case err != nil:
		e.Err = err
	default:
		e.Seat, e.Waiting = &seat, waiting
		e.Answer = seated(e.Answer, e.Workload, seat, waiting)
		if !e.Answer.Blind() {
			e.Active = e.Answer.Active
		}
	}
	return e, nil
}
