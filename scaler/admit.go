package scaler

import (
	"errors"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/readiness"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/trigger"
)

// MaxScaledObjects bounds what the scaler remembers per ScaledObject (its
// metadata for explain, its usage ledger): far more than a cluster holds,
// and a cap on what a misbehaving client of the KEDA port can make it keep.
const MaxScaledObjects = 100_000

// maxNameLen is Kubernetes' longest object name (a DNS subdomain).
const maxNameLen = 253

// admitted validates a KEDA request's metadata, then makes sure a real
// ScaledObject's trigger makes it, before anything is kept for it.
func (s *Server) admitted(ref *kedapb.ScaledObjectRef) (trigger.Workload, error) {
	w, err := s.workload(ref)
	if err != nil {
		return w, err
	}
	if s.admit != nil {
		if err := s.admit.Check(ref.GetNamespace(), ref.GetName(), ref.GetScalerMetadata()); err != nil {
			return trigger.Workload{}, admitError(err)
		}
	}
	s.noteMetadata(ref)
	return w, nil
}

// admitError is a refusal as KEDA gets it: Unavailable while this replica
// cannot answer yet (ScaledObjects not read, a peer's snapshot loading, a
// clock off: KEDA's round robin then never mixes its answers in),
// NotFound for a request no real trigger makes.
func admitError(err error) error {
	if errors.Is(err, scaledobjects.ErrNotSynced) || errors.Is(err, readiness.ErrLoading) || errors.Is(err, readiness.ErrClockSkew) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.NotFound, err.Error())
}

// workload validates a request's metadata before anything else.
func (s *Server) workload(ref *kedapb.ScaledObjectRef) (trigger.Workload, error) {
	if ref == nil {
		return trigger.Workload{}, status.Error(codes.InvalidArgument, "scaledObjectRef is missing")
	}
	if len(ref.GetNamespace()) > maxNameLen || len(ref.GetName()) > maxNameLen {
		return trigger.Workload{}, status.Errorf(codes.InvalidArgument, "scaledObjectRef %q/%q: expected a namespace and name of at most %d characters",
			trigger.Clip(ref.GetNamespace()), trigger.Clip(ref.GetName()), maxNameLen)
	}
	w, err := trigger.ParseMetadata(ref.GetScalerMetadata())
	if err != nil {
		var me *trigger.MetadataError
		if errors.As(err, &me) {
			return trigger.Workload{}, status.Errorf(codes.InvalidArgument, "%s: %s", refName(ref), err)
		}
		return trigger.Workload{}, status.Error(codes.InvalidArgument, err.Error())
	}
	if w.Subscription != "" && s.backlogs == nil {
		return trigger.Workload{}, status.Errorf(codes.FailedPrecondition,
			"%s: subscription %s: this scaler runs without a backlog source, so a %s that scales on a subscription cannot be answered: start it with --pubsub=monitoring (or --pubsub=embedded for local work)",
			refName(ref), w.Subscription, w.Kind)
	}
	return w, nil
}

// refName names a request's ScaledObject in errors.
func refName(ref *kedapb.ScaledObjectRef) string {
	if ref.GetNamespace() == "" && ref.GetName() == "" {
		return "trigger"
	}
	return ref.GetNamespace() + "/" + ref.GetName()
}
