package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/pools"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Pools is the GPU pools' definitions; pools.Store provides it.
type Pools interface {
	Set(name string, u pools.Update) (pools.Pool, error)
	Get(name string) (pools.Pool, bool)
	List() []pools.Pool
	Delete(name string) (pools.Pool, error)
}

// PoolStates gives each pool's state at its last turn (members, demands,
// shares, queue); false before its first.
type PoolStates interface {
	State(name string) (pool.State, bool)
}

// SetPool creates a pool or changes its settings, and answers once the
// change is on disk (and replicated).
func (s *Server) SetPool(ctx context.Context, req *pb.SetPoolRequest) (*pb.SetPoolResponse, error) {
	if s.pools == nil {
		return nil, status.Error(codes.Unimplemented, "GPU pools are not available on this scaler")
	}
	var u pools.Update
	if req.Gpus != nil {
		n := req.GetGpus()
		u.GPUs = &n
	}
	if req.WakeCount != nil {
		n := int(req.GetWakeCount())
		u.WakeCount = &n
		if req.WakePer != nil {
			if err := req.GetWakePer().CheckValid(); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "wake_per: %v", err)
			}
			u.WakePer = req.GetWakePer().AsDuration()
		}
	}
	if req.Stabilization != nil {
		if err := req.GetStabilization().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "stabilization: %v", err)
		}
		d := req.GetStabilization().AsDuration()
		u.Stabilization = &d
	}
	p, err := s.pools.Set(req.GetPool(), u)
	if err != nil {
		return nil, poolError(req.GetPool(), "not saved", err)
	}
	if err := s.replicated(ctx, changeAccepted); err != nil {
		return nil, err
	}
	return &pb.SetPoolResponse{Pool: s.poolProto(p, false)}, nil
}

// GetPool returns a pool with its members, their demand and share.
func (s *Server) GetPool(_ context.Context, req *pb.GetPoolRequest) (*pb.GetPoolResponse, error) {
	if s.pools == nil {
		return nil, status.Error(codes.Unimplemented, "GPU pools are not available on this scaler")
	}
	p, ok := s.pools.Get(req.GetPool())
	if !ok {
		return nil, poolError(req.GetPool(), "", &pools.NotFoundError{Name: req.GetPool()})
	}
	return &pb.GetPoolResponse{Pool: s.poolProto(p, true)}, nil
}

// ListPools returns every pool, without members.
func (s *Server) ListPools(context.Context, *pb.ListPoolsRequest) (*pb.ListPoolsResponse, error) {
	if s.pools == nil {
		return nil, status.Error(codes.Unimplemented, "GPU pools are not available on this scaler")
	}
	resp := &pb.ListPoolsResponse{}
	for _, p := range s.pools.List() {
		resp.Pools = append(resp.Pools, s.poolProto(p, false))
	}
	return resp, nil
}

// DeletePool deletes a pool and answers once the delete is on disk (and
// replicated).
func (s *Server) DeletePool(ctx context.Context, req *pb.DeletePoolRequest) (*pb.DeletePoolResponse, error) {
	if s.pools == nil {
		return nil, status.Error(codes.Unimplemented, "GPU pools are not available on this scaler")
	}
	p, err := s.pools.Delete(req.GetPool())
	if err != nil {
		return nil, poolError(req.GetPool(), "not deleted", err)
	}
	if err := s.replicated(ctx, changeAccepted); err != nil {
		return nil, err
	}
	return &pb.DeletePoolResponse{Pool: s.poolProto(p, false)}, nil
}

// poolError is a pools.Store error as a caller gets it.
func poolError(name, what string, err error) error {
	var field *pools.FieldError
	var nf *pools.NotFoundError
	var limit *pools.LimitError
	switch {
	case errors.As(err, &field):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.As(err, &nf):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &limit):
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Errorf(codes.Unavailable, "pool %q: %s: %v", name, what, err)
}

// poolProto is p for the wire, with its last turn's figures, and with
// its members when members is set.
func (s *Server) poolProto(p pools.Pool, members bool) *pb.Pool {
	out := &pb.Pool{Name: p.Name, Gpus: p.GPUs, WakeCount: int32(p.WakeCount), Stabilization: durationpb.New(p.Stabilization),
		Updated: timestamppb.New(p.At.Time())}
	if p.WakeCount > 0 {
		out.WakePer = durationpb.New(p.WakePer)
	}
	if s.poolStates == nil {
		return out
	}
	st, ok := s.poolStates.State(p.Name)
	if !ok {
		return out
	}
	out.DemandedGpus, out.GrantedGpus, out.Overcommitted, out.Queued = st.Demanded, st.Granted, st.Overcommitted, int32(len(st.Queue))
	out.TurnedAt, out.NextWake = timestamppb.New(st.At), ts(st.Next)
	if !members {
		return out
	}
	for _, seat := range st.Seats() {
		object, metric := pool.SplitID(seat.ID)
		out.Members = append(out.Members, &pb.PoolMember{ScaledObject: object, MetricName: metric, Org: seat.Org, Weight: seat.Weight,
			GpusPerReplica: seat.GPUs, Demand: seat.Demand, Share: seat.Share, Min: seat.Min, QueuePosition: int32(seat.Queued)})
	}
	return out
}
