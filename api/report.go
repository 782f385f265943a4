package api

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/usage"
)

// Reporter sums the usage ledger; usage.Ledger provides it.
type Reporter interface {
	Report(since time.Time) (from time.Time, rows []usage.Row, err error)
	Retention() time.Duration
}

// DefaultReportSince is the window of a report that names none.
const DefaultReportSince = 7 * 24 * time.Hour

// Report returns the GPU-hours ledger over a recent window.
func (s *Server) Report(_ context.Context, req *pb.ReportRequest) (*pb.ReportResponse, error) {
	if s.reports == nil {
		return nil, status.Error(codes.Unimplemented, "the usage report is not available on this scaler")
	}
	since := DefaultReportSince
	if req.GetSince() != nil {
		if err := req.GetSince().CheckValid(); err != nil || req.GetSince().AsDuration() <= 0 {
			return nil, status.Errorf(codes.InvalidArgument, "since is %v: expected a duration greater than zero", req.GetSince().AsDuration())
		}
		since = req.GetSince().AsDuration()
	}
	now := s.now()
	// Nothing older than the retention is kept: the window says so.
	since = min(since, s.reports.Retention())
	from, rows, err := s.reports.Report(now.Add(-since))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read the usage ledger: %v", err)
	}
	resp := &pb.ReportResponse{From: timestamppb.New(from), To: timestamppb.New(now), Retention: durationpb.New(s.reports.Retention())}
	for _, r := range rows {
		wakes := map[string]int64{}
		for _, c := range usage.Causes {
			wakes[c.String()] = r.Wakes[c]
		}
		resp.Workloads = append(resp.Workloads, &pb.WorkloadUsage{
			ScaledObject: r.ScaledObject, MetricName: r.Metric, Kind: r.Kind, Org: r.Org, GpusPerReplica: r.GPUs, GpuType: r.GPUType,
			Tracked: durationpb.New(r.Tracked), Active: durationpb.New(r.Active),
			ReplicaHours: r.ReplicaTime.Hours(), AlwaysOnReplicaHours: r.AlwaysOnReplica.Hours(),
			GpuHours: r.GPUTime.Hours(), AlwaysOnGpuHours: r.AlwaysOnGPU.Hours(),
			Wakes: wakes,
		})
	}
	return resp, nil
}
