package api

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/history"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// History reads the activity history; history.Store provides it.
type History interface {
	Read(day time.Time, each func(history.Day) error) error
}

// historyChunk is how many org days one History message carries.
const historyChunk = 1000

// History streams one UTC day of every org's activity, by the minute.
func (s *Server) History(req *pb.HistoryRequest, stream pb.AdminService_HistoryServer) error {
	if s.history == nil {
		return status.Error(codes.Unimplemented, "history is not kept on this scaler")
	}
	now := s.now()
	day := now.UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	if req.Day != nil {
		if err := req.GetDay().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "day: %v", err)
		}
		day = req.GetDay().AsTime().UTC().Truncate(24 * time.Hour)
	}
	if day.After(now) {
		return status.Errorf(codes.InvalidArgument, "day is %s: expected today or a day before it", day.Format(time.DateOnly))
	}
	var chunk []*pb.ActivityDay
	send := func() error {
		err := stream.Send(&pb.HistoryResponse{Days: chunk})
		chunk = chunk[:0]
		return err
	}
	err := s.history.Read(day, func(d history.Day) error {
		if chunk = append(chunk, &pb.ActivityDay{Org: d.Org, DayUnix: d.Day.Unix(), Minutes: history.Encode(&d.Bits)}); len(chunk) == historyChunk {
			return send()
		}
		return nil
	})
	if err == nil && len(chunk) > 0 {
		err = send()
	}
	if err != nil && status.Code(err) == codes.Unknown {
		return status.Errorf(codes.Unavailable, "history: %v", err)
	}
	return err
}
