package api

import (
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/activity"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/schedule"
	"github.com/orgscaler/orgscaler/trigger"
)

// Bounds of an import: rows per message (a chunk is checked, applied and
// replicated whole), and change lines kept for the answer.
const (
	MaxImportChunk   = 10_000
	maxImportChanges = 1000
)

// ImportOrgs creates or updates orgs from a cutover's export, a chunk at
// a time: each chunk is checked whole, applied, and replicated before the
// next is read, so the stream holds no more than one chunk and a Pub/Sub
// outage ends it with Unavailable (what was applied is said; importing
// again is safe).
func (s *Server) ImportOrgs(stream grpc.ClientStreamingServer[pb.ImportOrgsRequest, pb.ImportOrgsResponse]) error {
	ctx := stream.Context()
	resp := &pb.ImportOrgsResponse{}
	first := true
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(resp)
		}
		if err != nil {
			return err
		}
		if first {
			resp.DryRun, first = req.GetDryRun(), false
		}
		if n := len(req.GetOrgs()); n > MaxImportChunk {
			return status.Errorf(codes.InvalidArgument, "a message holds %d orgs: expected at most %d (send the rest in the next message)", n, MaxImportChunk)
		}
		rows, err := importRows(req.GetOrgs())
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "%v (%s)", err, imported(resp))
		}
		res, err := s.store.Import(rows, resp.DryRun)
		var ie *activity.ImportError
		switch {
		case errors.As(err, &ie):
			return status.Errorf(codes.InvalidArgument, "line %d: %v (%s)", req.GetOrgs()[ie.Row].GetLine(), ie, imported(resp))
		case err != nil:
			return status.Errorf(codes.Unavailable, "import not saved from line %d on: %v (%s)", req.GetOrgs()[0].GetLine(), err, imported(resp))
		}
		count(resp, req.GetOrgs(), res)
		if !resp.DryRun {
			accepted := fmt.Sprintf("the %d rows read so far are imported here", resp.GetRows())
			if err := s.replicated(ctx, accepted); err != nil {
				return err
			}
		}
	}
}

// imported says what an import applied so far.
func imported(r *pb.ImportOrgsResponse) string {
	if r.GetDryRun() {
		return fmt.Sprintf("dry run: nothing changed; %d rows read before it", r.GetRows())
	}
	return fmt.Sprintf("the %d rows before it are imported", r.GetRows())
}

// importRows checks each row's own fields, naming its line and the field.
func importRows(in []*pb.ImportedOrg) ([]activity.Imported, error) {
	rows := make([]activity.Imported, len(in))
	for i, m := range in {
		bad := func(field, format string, args ...any) error {
			return fmt.Errorf("line %d: %s "+format, append([]any{m.GetLine(), field}, args...)...)
		}
		if err := checkOrg("org", m.GetOrg()); err != nil {
			return nil, fmt.Errorf("line %d: %s", m.GetLine(), status.Convert(err).Message())
		}
		r := activity.Imported{Org: m.GetOrg()}
		if t := m.GetLastActivityAt(); t != nil {
			if err := t.CheckValid(); err != nil {
				return nil, bad("last_activity_at", "is not a valid instant: %v", err)
			}
			r.LastActivity = t.AsTime()
		}
		if m.ScaleToZeroAllowed != nil {
			v := m.GetScaleToZeroAllowed()
			r.ScaleToZeroAllowed = &v
		}
		if m.IdleWindow != nil {
			d := m.GetIdleWindow().AsDuration()
			if err := m.GetIdleWindow().CheckValid(); err != nil || d < 0 || d > MaxIdleWindow || (d > 0 && d < time.Second) {
				return nil, bad("idle_window", "is %s: expected 0 (the scaler's default) or 1s to %s", d, MaxIdleWindow)
			}
			r.IdleWindow = &d
		}
		if m.WarmSchedule != nil {
			if _, err := schedule.Parse(m.GetWarmSchedule()); err != nil {
				return nil, bad("warm_schedule", "is %q: %v", trigger.Clip(m.GetWarmSchedule()), err)
			}
			v := m.GetWarmSchedule()
			r.WarmSchedule = &v
		}
		rows[i] = r
	}
	return rows, nil
}

// count adds one chunk's result to the answer, keeping the first
// maxImportChanges change lines.
func count(resp *pb.ImportOrgsResponse, in []*pb.ImportedOrg, res activity.ImportResult) {
	resp.Rows += int64(len(in))
	resp.Created += int64(res.Created)
	resp.Updated += int64(res.Updated)
	resp.Unchanged += int64(res.Unchanged)
	resp.Dormant += int64(res.Dormant)
	line := map[string]int64{}
	for _, m := range in {
		line[m.GetOrg()] = m.GetLine()
	}
	for _, c := range res.Changes {
		if len(resp.Changes) == maxImportChanges {
			resp.ChangesLeftOut++
			continue
		}
		resp.Changes = append(resp.Changes, changeLine(line[c.Org], c))
	}
}

func changeLine(line int64, c activity.ImportChange) string {
	what := fmt.Sprintf("line %d: %s: ", line, c.Org)
	switch {
	case c.Created && c.Dormant:
		return what + "created, dormant"
	case c.Created:
		return what + "created, active"
	}
	for i, f := range c.Fields {
		if i > 0 {
			what += "; "
		}
		what += f
	}
	return what
}
