package api

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orgscaler/orgscaler/explain"
	"github.com/orgscaler/orgscaler/knative"
	"github.com/orgscaler/orgscaler/pool"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Explainer evaluates triggers the way KEDA's answers are evaluated;
// scaler.Server provides it.
type Explainer interface {
	Explain(md map[string]string) (explain.Explanation, error)
	ExplainScaledObject(nsName string) (explain.Explanation, error)
}

// KnativeServices lists an org's Knative Services; knative.Actuator
// provides it.
type KnativeServices interface {
	Of(org string) []knative.Applied
}

// Explain says why a trigger's workload is active or not right now.
func (s *Server) Explain(_ context.Context, req *pb.ExplainRequest) (*pb.ExplainResponse, error) {
	if s.explainer == nil {
		return nil, status.Error(codes.Unimplemented, "explain is not available on this scaler")
	}
	var e explain.Explanation
	var err error
	switch so := req.GetScaledObject(); {
	case so != "" && len(req.GetMetadata()) > 0:
		return nil, status.Error(codes.InvalidArgument, "give metadata or scaled_object, not both")
	case so != "":
		if ns, name, ok := strings.Cut(so, "/"); !ok || ns == "" || name == "" {
			return nil, status.Errorf(codes.InvalidArgument, "scaled_object is %q: expected NAMESPACE/NAME", so)
		}
		e, err = s.explainer.ExplainScaledObject(so)
	case len(req.GetMetadata()) > 0:
		e, err = s.explainer.Explain(req.GetMetadata())
	default:
		return nil, status.Error(codes.InvalidArgument, "metadata is empty: give the trigger's metadata, or scaled_object NAMESPACE/NAME")
	}
	if err != nil {
		return nil, err
	}
	r := ExplanationProto(e)
	if s.knative != nil && e.Org != nil {
		for _, ap := range s.knative.Of(e.Org.ID) {
			r.KnativeServices = append(r.KnativeServices, &pb.KnativeService{Namespace: ap.Service.Namespace, Name: ap.Service.Name,
				Revision: ap.Revision, MinScale: ap.MinScale, PatchedAt: ts(ap.PatchedAt)})
		}
	}
	return r, nil
}

// ExplanationProto converts an explanation for the wire.
func ExplanationProto(e explain.Explanation) *pb.ExplainResponse {
	r := &pb.ExplainResponse{
		Metadata:   e.Metadata,
		Workload:   string(e.Workload.Kind),
		MetricName: e.Workload.MetricName(),
		Active:     e.Active,
		Replicas:   e.Answer.Replicas,
		Rule:       string(e.Answer.Rule),
		Reason:     e.Answer.Reason(),
		NextChange: ts(e.Answer.NextChange),
	}
	if e.Org != nil {
		r.Org = OrgProto(*e.Org, e.Answer.At())
		if plan, ok := e.Answer.Plan(); ok {
			k := e.Workload.KeepAlive
			r.KeepAlive = &pb.KeepAlivePlan{Policy: k.Policy, ColdStart: durationpb.New(k.ColdStart), MinWarm: durationpb.New(k.MinWarm),
				KeepFor: durationpb.New(plan.KeepFor), NextPrewarm: ts(e.Answer.NextPrewarm()), Why: plan.Why,
				IdleTimes: e.IdleTimes, FleetIdleTimes: e.FleetIdleTimes}
			if plan.PrewarmFrom > 0 {
				r.KeepAlive.PrewarmFrom, r.KeepAlive.PrewarmUntil = durationpb.New(plan.PrewarmFrom), durationpb.New(plan.PrewarmUntil)
			}
			return finish(r, e)
		}
		switch {
		case e.Workload.WarmFor > 0:
			r.Window, r.WindowSource = durationpb.New(e.Workload.WarmFor), "warmFor"
		case e.Org.IdleWindowOverridden:
			r.Window, r.WindowSource = durationpb.New(e.Org.IdleWindow), "org"
		default:
			r.Window, r.WindowSource = durationpb.New(e.Org.IdleWindow), "default"
		}
	}
	return finish(r, e)
}

// finish adds the backlog, the pool and the error to an explanation.
func finish(r *pb.ExplainResponse, e explain.Explanation) *pb.ExplainResponse {
	r.Pool = e.Workload.Pool
	if s := e.Seat; s != nil {
		object, metric := pool.SplitID(s.ID)
		r.PoolMember = &pb.PoolMember{ScaledObject: object, MetricName: metric, Org: s.Org, Weight: s.Weight, GpusPerReplica: s.GPUs,
			Demand: s.Demand, Share: s.Share, Min: s.Min, QueuePosition: int32(s.Queued)}
		r.PoolQueued = int32(e.Waiting)
	}
	if e.Backlog != nil {
		r.Backlog = BacklogProto(*e.Backlog)
	}
	if e.Err != nil {
		st := status.Convert(e.Err)
		r.Error = st.Code().String() + ": " + st.Message()
	}
	return r
}
