// Package api serves the scaler's own gRPC API (proto/orgscaler/v1):
// activity from producers, and reading and changing orgs for operators.
package api

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/orgid"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/schedule"
	"github.com/orgscaler/orgscaler/trigger"
)

// Store is what the API needs of the org store; activity.Store provides it.
type Store interface {
	RecordFor(id string, why activity.WakeReason) (activity.Org, bool, error)
	RecordAt(id string, why activity.WakeReason, at time.Time) (activity.Org, bool, error)
	Get(id string) (activity.Org, bool)
	List(f activity.Filter, after string, limit int) ([]activity.Org, bool)
	Update(ctx context.Context, id string, u activity.Update) (activity.Org, error)
	Import(rows []activity.Imported, dryRun bool) (activity.ImportResult, error)
	Delete(ctx context.Context, id string) (activity.Org, int, bool, error)
	Digest() ([32]byte, int)
	Len() int
}

// Replicator sends what this replica accepts to the others;
// replication.Replicator provides it. Nil with one replica.
type Replicator interface {
	// Sync returns once every change made so far is published, or after
	// a bound of its own.
	Sync(ctx context.Context) error
	// EnqueueHint sends an enqueue hint to every other replica.
	EnqueueHint(sub string, n int64, at time.Time)
}

// Backlogs is what the API needs of the backlog tracker; nil when the
// scaler runs without a backlog source.
type Backlogs interface {
	Hint(sub string, n int64) (pubsubdepth.Depth, error)
	Snapshot() []pubsubdepth.Depth
}

// Page sizes for ListOrgs.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// MaxIdleWindow bounds an org's idle window; longer is surely a typo.
const MaxIdleWindow = 366 * 24 * time.Hour

// Server implements ActivityService and AdminService.
type Server struct {
	pb.UnimplementedActivityServiceServer
	pb.UnimplementedAdminServiceServer
	store      Store
	backlogs   Backlogs
	explainer  Explainer
	reports    Reporter
	slots      chan struct{} // ingest slots: recording activity holds one
	now        func() time.Time
	done       <-chan struct{}
	replica    string
	repl       Replicator
	snapshot   func(withUsage bool, send func(*pb.SnapshotResponse) error) error
	ready      func() bool
	history    History
	knative    KnativeServices
	maxSkew    time.Duration
	maxAge     time.Duration
	restore    func(*pb.SnapshotResponse) (int, error)
	pools      Pools
	poolStates PoolStates
	digest     func() ([32]byte, int)
}

// replicated returns once the changes made so far reach every replica;
// until then the caller is not told its change is done. Sync's own bound
// (--replication-wait) answers a caller that set no deadline (curl,
// grpcurl) with Unavailable instead of a hang while Pub/Sub is away. It
// is never called while holding an ingest slot: the change is already in
// force here, and other producers' activity must not wait on the network
// behind it. accepted says what was taken, for the error.
func (s *Server) replicated(ctx context.Context, accepted string) error {
	if s.repl == nil {
		return nil
	}
	if err := s.repl.Sync(ctx); err != nil {
		return status.Errorf(codes.Unavailable, "%s but not yet replicated: %v; retry, it is safe to send again", accepted, err)
	}
	return nil
}

// changeAccepted is what replicated says of one change.
const changeAccepted = "the change is accepted here"

// Options configure a Server.
type Options struct {
	Store     Store
	Backlogs  Backlogs // nil: no backlog source
	Explainer Explainer
	Reports   Reporter // nil: no usage ledger
	Now       func() time.Time
	// Done ends open activity streams cleanly, with their counts, when
	// closed.
	Done <-chan struct{}
	// Replica is this replica's id, named in Digest.
	Replica string
	// Replication, when set, is waited on before a change is acknowledged
	// (with several replicas, a change is done once every replica can get
	// it), and sends hints to the other replicas.
	Replication Replicator
	// Snapshot, when set, sends every org's state in chunks, for a peer
	// that starts empty and for a backup; Ready says whether this replica
	// holds its own whole state yet. Restore, when set, applies one chunk.
	Snapshot func(withUsage bool, send func(*pb.SnapshotResponse) error) error
	Restore  func(*pb.SnapshotResponse) (int, error)
	Ready    func() bool
	// History, when set, is the activity history History streams.
	History History
	// Knative, when set (--knative), lists each org's Knative Services
	// for Explain.
	Knative KnativeServices
	// MaxClockSkew and MaxActivityAge bound a RecordActivity's at: no
	// later than now plus the one (then taken as now), no earlier than now
	// minus the other (defaults: 30s and 24h).
	MaxClockSkew, MaxActivityAge time.Duration
	// Pools, when set, are the GPU pools' definitions; PoolStates their
	// last turns.
	Pools      Pools
	PoolStates PoolStates
	// Digest, when set, is what Digest answers (the orgs', and the
	// pools' when there are any); else the store's.
	Digest func() ([32]byte, int)
}

// New returns a Server.
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	o.MaxClockSkew = cmp.Or(o.MaxClockSkew, 30*time.Second)
	o.MaxActivityAge = cmp.Or(o.MaxActivityAge, 24*time.Hour)
	return &Server{maxSkew: o.MaxClockSkew, maxAge: o.MaxActivityAge, restore: o.Restore, store: o.Store, backlogs: o.Backlogs, explainer: o.Explainer, reports: o.Reports, now: o.Now, done: o.Done, replica: o.Replica, repl: o.Replication, snapshot: o.Snapshot, ready: o.Ready, history: o.History, knative: o.Knative,
		pools: o.Pools, poolStates: o.PoolStates, digest: o.Digest,
		slots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))}
}

func checkOrg(field, org string) error {
	if org == "" {
		return status.Errorf(codes.InvalidArgument, "%s is missing: expected %s", field, orgid.Expected)
	}
	if !orgid.Valid(org) {
		return status.Errorf(codes.InvalidArgument, "%s is %q: expected %s", field, trigger.Clip(org), orgid.Expected)
	}
	return nil
}

// RecordActivity records one activity of an org.
func (s *Server) RecordActivity(ctx context.Context, req *pb.RecordActivityRequest) (*pb.RecordActivityResponse, error) {
	if err := checkOrg("org", req.GetOrg()); err != nil {
		return nil, err
	}
	at, err := s.activityAt(req)
	if err != nil {
		return nil, err
	}
	s.slots <- struct{}{}
	o, woke, err := s.store.RecordAt(req.GetOrg(), activity.WakeActivity, at)
	<-s.slots
	if err != nil {
		return nil, recordError("", err)
	}
	if err := s.replicated(ctx, changeAccepted); err != nil {
		return nil, err
	}
	return &pb.RecordActivityResponse{Org: OrgProto(o, s.now()), Woke: woke}, nil
}

// activityAt is when a RecordActivity's activity happened: its at, held
// to the bounds (zero: now).
func (s *Server) activityAt(req *pb.RecordActivityRequest) (time.Time, error) {
	if req.GetAt() == nil {
		return time.Time{}, nil
	}
	if err := req.GetAt().CheckValid(); err != nil {
		return time.Time{}, status.Errorf(codes.InvalidArgument, "at is not a valid instant: %v", err)
	}
	at, now := req.GetAt().AsTime(), s.now()
	switch {
	case at.After(now.Add(s.maxSkew)):
		return time.Time{}, status.Errorf(codes.InvalidArgument, "at is %s, %s after this scaler's now: expected an instant no later than now (the sender's clock may be at most --max-clock-skew, %s, ahead)",
			at.Format(time.RFC3339Nano), at.Sub(now).Round(time.Millisecond), s.maxSkew)
	case at.Before(now.Add(-s.maxAge)):
		return time.Time{}, status.Errorf(codes.InvalidArgument, "at is %s, %s ago: expected an instant within the scaler's --idle-window (%s); older activity could not keep an org warm",
			at.Format(time.RFC3339Nano), now.Sub(at).Round(time.Second), s.maxAge)
	}
	return at, nil
}

// StreamActivity records every event on the stream. A bad event ends the
// stream with InvalidArgument naming its position; the events before it
// are kept. When the scaler stops, the stream ends with the counts so far
// once they are replicated (or Unavailable if they could not be within
// --replication-wait), so the producer knows what to send again elsewhere.
func (s *Server) StreamActivity(stream pb.ActivityService_StreamActivityServer) error {
	var events, woken int64
	type received struct {
		ev  *pb.StreamActivityRequest
		err error
	}
	// Buffered: the reader runs ahead of the recorder instead of handing
	// over one event at a time (two goroutine switches an event).
	in := make(chan received, 64)
	go func() {
		for {
			ev, err := stream.Recv()
			select {
			case in <- received{ev, err}:
			case <-stream.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// handle records one event; finished says the stream is over (eof:
	// the producer sent everything).
	handle := func(r received) (finished, eof bool, err error) {
		if errors.Is(r.err, io.EOF) {
			return true, true, nil
		}
		if r.err != nil {
			return true, false, r.err
		}
		if !orgid.Valid(r.ev.GetOrg()) { // the message is written only for a bad one
			return true, false, checkOrg(fmt.Sprintf("event %d: org", events+1), r.ev.GetOrg())
		}
		_, woke, err := s.store.RecordFor(r.ev.GetOrg(), activity.WakeActivity)
		if err != nil {
			return true, false, recordError(fmt.Sprintf("event %d: ", events+1), err)
		}
		if woke {
			woken++
		}
		events++
		return false, false, nil
	}
	// done answers with the counts once what was recorded is replicated,
	// outside the ingest slot: the events are in force here already.
	done := func() error {
		if err := s.replicated(stream.Context(), fmt.Sprintf("%d events recorded here (%d woke their org)", events, woken)); err != nil {
			return err
		}
		return stream.SendAndClose(&pb.StreamActivityResponse{Events: events, Woken: woken})
	}
	for {
		var r received
		select {
		case r = <-in:
		case <-s.done:
			return done()
		}
		// Events are recorded in runs of up to 256 while holding one of the
		// ingest slots, so however many producers stream at once, activity
		// keeps at most GOMAXPROCS-1 cores and KEDA's answers one.
		s.slots <- struct{}{}
		finished, eof, err := handle(r)
		for range 255 {
			if finished {
				break
			}
			select {
			case r = <-in:
				finished, eof, err = handle(r)
				continue
			default:
			}
			break
		}
		<-s.slots
		switch {
		case eof:
			return done()
		case finished:
			return err
		}
	}
}

// recordError is the gRPC status of a refused activity; prefix places it in
// a stream.
func recordError(prefix string, err error) error {
	var le *activity.LimitError
	if errors.As(err, &le) {
		return status.Errorf(codes.ResourceExhausted, "%s%s", prefix, err)
	}
	return status.Errorf(codes.Internal, "%srecord activity: %v", prefix, err)
}

// Hint records an enqueue hint, and the org's activity when it names one.
func (s *Server) Hint(ctx context.Context, req *pb.HintRequest) (*pb.HintResponse, error) {
	if !trigger.ValidSubscription(req.GetSubscription()) {
		return nil, status.Errorf(codes.InvalidArgument, "subscription is %q: expected projects/PROJECT/subscriptions/SUBSCRIPTION",
			trigger.Clip(req.GetSubscription()))
	}
	if req.GetOrg() != "" {
		if err := checkOrg("org", req.GetOrg()); err != nil {
			return nil, err
		}
	}
	if n := req.GetMessages(); n < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "messages is %d: expected a count >= 0", n)
	}
	if s.backlogs == nil {
		return nil, status.Error(codes.FailedPrecondition, "this scaler runs without a backlog source (--pubsub=none): hints have nothing to add to")
	}
	// The org first: refused past --max-orgs, the call is retried, and a
	// hint counted before it would be counted twice. Activity recorded
	// before a refused hint is true all the same.
	resp := &pb.HintResponse{}
	if req.GetOrg() != "" {
		o, _, err := s.store.RecordFor(req.GetOrg(), activity.WakeHint)
		if err != nil {
			return nil, recordError("", err)
		}
		resp.Org = OrgProto(o, s.now())
	}
	d, err := s.backlogs.Hint(req.GetSubscription(), req.GetMessages())
	if err != nil {
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	}
	resp.Backlog = BacklogProto(d)
	if s.repl != nil && req.GetMessages() > 0 {
		s.repl.EnqueueHint(req.GetSubscription(), req.GetMessages(), s.now())
	}
	if err := s.replicated(ctx, changeAccepted); err != nil {
		return nil, err
	}
	return resp, nil
}

// ListBacklogs lists every tracked subscription.
func (s *Server) ListBacklogs(context.Context, *pb.ListBacklogsRequest) (*pb.ListBacklogsResponse, error) {
	resp := &pb.ListBacklogsResponse{}
	if s.backlogs == nil {
		return resp, nil
	}
	for _, d := range s.backlogs.Snapshot() {
		resp.Backlogs = append(resp.Backlogs, BacklogProto(d))
	}
	return resp, nil
}

// BacklogProto converts a backlog for the wire.
func BacklogProto(d pubsubdepth.Depth) *pb.Backlog {
	b := &pb.Backlog{
		Subscription:     d.Subscription,
		Known:            d.Known,
		Messages:         d.Messages,
		ObservedMessages: d.Observed.Messages,
		ObservedAt:       ts(d.Observed.At),
		HintMessages:     d.Hint,
		HintAt:           ts(d.HintAt),
		Existence:        d.Exists.String(),
		Reason:           d.Reason(),
	}
	if d.Err != nil {
		b.Error = d.Err.Error()
	}
	return b
}

// GetOrg returns one org.
func (s *Server) GetOrg(_ context.Context, req *pb.GetOrgRequest) (*pb.GetOrgResponse, error) {
	if err := checkOrg("org", req.GetOrg()); err != nil {
		return nil, err
	}
	o, ok := s.store.Get(req.GetOrg())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "org %q: never seen (no activity, and no trigger has named it)", req.GetOrg())
	}
	return &pb.GetOrgResponse{Org: OrgProto(o, s.now())}, nil
}

// ListOrgs returns a page of orgs in id order.
func (s *Server) ListOrgs(_ context.Context, req *pb.ListOrgsRequest) (*pb.ListOrgsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > MaxPageSize:
		return nil, status.Errorf(codes.InvalidArgument, "page_size is %d: expected 0 (default %d) to %d", size, DefaultPageSize, MaxPageSize)
	case size == 0:
		size = DefaultPageSize
	}
	var f activity.Filter
	switch req.GetFilter() {
	case pb.ListOrgsRequest_FILTER_UNSPECIFIED:
		f = activity.All
	case pb.ListOrgsRequest_FILTER_ACTIVE:
		f = activity.Active
	case pb.ListOrgsRequest_FILTER_DORMANT:
		f = activity.Dormant
	default:
		return nil, status.Errorf(codes.InvalidArgument, "filter is %d: expected FILTER_UNSPECIFIED, FILTER_ACTIVE or FILTER_DORMANT", req.GetFilter())
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		var ok bool
		after, ok = strings.CutPrefix(tok, "after:")
		if !ok || !orgid.Valid(after) {
			return nil, status.Errorf(codes.InvalidArgument, "page_token is %q: expected the next_page_token of a previous page", trigger.Clip(tok))
		}
	}
	orgs, more := s.store.List(f, after, size)
	resp := &pb.ListOrgsResponse{Orgs: make([]*pb.Org, 0, len(orgs))}
	for _, o := range orgs {
		resp.Orgs = append(resp.Orgs, OrgProto(o, s.now()))
	}
	if more {
		resp.NextPageToken = "after:" + orgs[len(orgs)-1].ID
	}
	return resp, nil
}

// UpdateOrg changes an org's settings and answers once they are on disk.
func (s *Server) UpdateOrg(ctx context.Context, req *pb.UpdateOrgRequest) (*pb.UpdateOrgResponse, error) {
	if err := checkOrg("org", req.GetOrg()); err != nil {
		return nil, err
	}
	var u activity.Update
	if req.ScaleToZeroAllowed != nil {
		v := req.GetScaleToZeroAllowed()
		u.ScaleToZeroAllowed = &v
	}
	if req.IdleWindow != nil {
		if err := req.GetIdleWindow().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "idle_window: %v", err)
		}
		d := req.GetIdleWindow().AsDuration()
		if d < 0 || d > MaxIdleWindow {
			return nil, status.Errorf(codes.InvalidArgument, "idle_window is %s: expected 0 (use the scaler's default) to %s", d, MaxIdleWindow)
		}
		if d > 0 && d < time.Second {
			return nil, status.Errorf(codes.InvalidArgument, "idle_window is %s: expected 0 (use the scaler's default) or at least 1s", d)
		}
		u.IdleWindow = &d
	}
	if req.WarmSchedule != nil {
		if _, err := schedule.Parse(req.GetWarmSchedule()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "warm_schedule is %q: %v", trigger.Clip(req.GetWarmSchedule()), err)
		}
		v := req.GetWarmSchedule()
		u.WarmSchedule = &v
	}
	if req.PoolWeight != nil {
		w := req.GetPoolWeight()
		if w < 1 || w > activity.MaxPoolWeight {
			return nil, status.Errorf(codes.InvalidArgument, "pool_weight is %d: expected 1 (the default) to %d", w, activity.MaxPoolWeight)
		}
		u.PoolWeight = &w
	}
	if u.ScaleToZeroAllowed == nil && u.IdleWindow == nil && u.WarmSchedule == nil && u.PoolWeight == nil {
		return nil, status.Error(codes.InvalidArgument, "nothing to change: set scale_to_zero_allowed, idle_window, warm_schedule or pool_weight")
	}
	o, err := s.store.Update(ctx, req.GetOrg(), u)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "org %q: change not saved: %v", req.GetOrg(), err)
	}
	if err := s.replicated(ctx, changeAccepted); err != nil {
		return nil, err
	}
	return &pb.UpdateOrgResponse{Org: OrgProto(o, s.now())}, nil
}

// DeleteOrg removes an org from memory and disk, and answers once it is
// gone from both.
func (s *Server) DeleteOrg(ctx context.Context, req *pb.DeleteOrgRequest) (*pb.DeleteOrgResponse, error) {
	if err := checkOrg("org", req.GetOrg()); err != nil {
		return nil, err
	}
	o, streams, ok, err := s.store.Delete(ctx, req.GetOrg())
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "org %q: not deleted: %v", req.GetOrg(), err)
	case !ok:
		return nil, status.Errorf(codes.NotFound, "org %q: the scaler does not hold it", req.GetOrg())
	}
	if err := s.replicated(ctx, changeAccepted); err != nil {
		return nil, err
	}
	return &pb.DeleteOrgResponse{Org: OrgProto(o, s.now()), OpenStreams: int32(min(streams, 1<<30))}, nil
}

// Digest hashes every org's state, so replicas can be compared.
func (s *Server) Digest(context.Context, *pb.DigestRequest) (*pb.DigestResponse, error) {
	digest := s.digest
	if digest == nil {
		digest = s.store.Digest
	}
	sum, n := digest()
	return &pb.DigestResponse{Digest: hex.EncodeToString(sum[:]), Orgs: int64(n), Replica: s.replica,
		Loading: s.ready != nil && !s.ready()}, nil
}

// Snapshot streams every org's state to a peer that starts empty, or to
// scalerctl backup.
func (s *Server) Snapshot(req *pb.SnapshotRequest, stream pb.AdminService_SnapshotServer) error {
	if s.snapshot == nil {
		return status.Error(codes.Unimplemented, "snapshots are not available on this scaler")
	}
	if s.ready != nil && !s.ready() {
		return status.Error(codes.Unavailable, "this replica is still loading its own state from a peer: ask another")
	}
	err := s.snapshot(req.GetUsage(), func(chunk *pb.SnapshotResponse) error {
		chunk.Replica = s.replica
		return stream.Send(chunk)
	})
	if err != nil && status.Code(err) == codes.Unknown {
		return status.Errorf(codes.Unavailable, "snapshot: %v", err)
	}
	return err
}

// OrgProto converts an org for the wire.
func OrgProto(o activity.Org, now time.Time) *pb.Org {
	p := &pb.Org{
		Id:                   o.ID,
		State:                pb.Org_STATE_ACTIVE,
		LastActivity:         ts(o.LastActivity),
		FirstSeen:            ts(o.FirstSeen),
		DormantSince:         ts(o.DormantSince),
		DormantAt:            ts(o.DormantAt(now)),
		ScaleToZeroAllowed:   o.ScaleToZeroAllowed,
		IdleWindow:           durationpb.New(o.IdleWindow),
		IdleWindowOverridden: o.IdleWindowOverridden,
		WarmSchedule:         o.WarmSchedule.String(),
		PoolWeight:           max(o.PoolWeight, 1),
	}
	if o.Dormant() {
		p.State = pb.Org_STATE_DORMANT
	}
	return p
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
