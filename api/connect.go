package api

import (
	"context"
	"errors"
	"io"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/proto/orgscaler/v1/orgscalerv1connect"
)

// Connect serves the API in the Connect protocol (HTTP/1.1 or HTTP/2,
// JSON or binary) as well as gRPC and gRPC-Web, from the same methods as
// the gRPC server: `curl -H 'Content-Type: application/json' -d
// '{"org":"acme"}' http://HOST:9091/orgscaler.v1.ActivityService/RecordActivity`.
// The paths are the gRPC method names; errors keep their codes, which
// Connect turns into HTTP statuses (InvalidArgument 400, Unauthenticated
// 401, PermissionDenied 403, NotFound 404, ResourceExhausted 429,
// Unavailable 503).
//
// maxBytes bounds a request message, as the gRPC server's limit does.
func (s *Server) Connect(maxBytes int) *http.ServeMux {
	mux := http.NewServeMux()
	opts := connect.WithHandlerOptions(connect.WithInterceptors(grpcErrors{}), connect.WithReadMaxBytes(maxBytes))
	c := connected{s}
	mux.Handle(orgscalerv1connect.NewActivityServiceHandler(c, opts))
	mux.Handle(orgscalerv1connect.NewAdminServiceHandler(c, opts))
	return mux
}

// connected is the Server as Connect handlers call it: the unary methods
// are the Server's own (their signatures are Connect's simple ones); the
// streams go through adapters to the gRPC stream interfaces.
type connected struct{ *Server }

func (c connected) StreamActivity(ctx context.Context, in *connect.ClientStream[pb.StreamActivityRequest]) (*pb.StreamActivityResponse, error) {
	st := &clientStream[pb.StreamActivityRequest, pb.StreamActivityResponse]{stream: stream{ctx: ctx}, in: in}
	if err := c.Server.StreamActivity(st); err != nil {
		return nil, err
	}
	return st.out, nil
}

func (c connected) Snapshot(ctx context.Context, r *pb.SnapshotRequest, out *connect.ServerStream[pb.SnapshotResponse]) error {
	return c.Server.Snapshot(r, &serverStream[pb.SnapshotResponse]{stream: stream{ctx: ctx}, out: out})
}

func (c connected) History(ctx context.Context, r *pb.HistoryRequest, out *connect.ServerStream[pb.HistoryResponse]) error {
	return c.Server.History(r, &serverStream[pb.HistoryResponse]{stream: stream{ctx: ctx}, out: out})
}

// stream is what the gRPC stream interfaces ask beyond the messages:
// headers and trailers, which these methods never set.
type stream struct{ ctx context.Context }

func (s stream) Context() context.Context             { return s.ctx }
func (stream) SetHeader(metadata.MD) error            { return nil }
func (stream) SendHeader(metadata.MD) error           { return nil }
func (stream) SetTrailer(metadata.MD)                 {}
func (stream) SendMsg(any) error                      { return errors.New("api: SendMsg is not used on Connect streams") }
func (stream) RecvMsg(any) error                      { return errors.New("api: RecvMsg is not used on Connect streams") }
func (s *serverStream[T]) Send(m *T) error            { return s.out.Send(m) }
func (s *clientStream[I, O]) SendAndClose(m *O) error { s.out = m; return nil }

type serverStream[T any] struct {
	stream
	out *connect.ServerStream[T]
}

var _ grpc.ServerStreamingServer[pb.HistoryResponse] = (*serverStream[pb.HistoryResponse])(nil)

type clientStream[I, O any] struct {
	stream
	in  *connect.ClientStream[I]
	out *O
}

func (s *clientStream[I, O]) Recv() (*I, error) {
	if s.in.Receive() {
		return s.in.Msg(), nil
	}
	if err := s.in.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

var _ grpc.ClientStreamingServer[pb.StreamActivityRequest, pb.StreamActivityResponse] = (*clientStream[pb.StreamActivityRequest, pb.StreamActivityResponse])(nil)

// grpcErrors gives the gRPC status errors the methods return to Connect
// with their codes (Connect's are the same numbers), so each maps to its
// HTTP status instead of 500.
type grpcErrors struct{}

func (grpcErrors) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, r)
		return resp, toConnect(err)
	}
}

func (grpcErrors) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (grpcErrors) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return toConnect(next(ctx, conn))
	}
}

func toConnect(err error) error {
	var ce *connect.Error
	if err == nil || errors.As(err, &ce) {
		return err
	}
	if st, ok := status.FromError(err); ok {
		return connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
	}
	return err
}

func (c connected) ImportOrgs(ctx context.Context, in *connect.ClientStream[pb.ImportOrgsRequest]) (*pb.ImportOrgsResponse, error) {
	st := &clientStream[pb.ImportOrgsRequest, pb.ImportOrgsResponse]{stream: stream{ctx: ctx}, in: in}
	if err := c.Server.ImportOrgs(st); err != nil {
		return nil, err
	}
	return st.out, nil
}

func (c connected) Restore(ctx context.Context, in *connect.ClientStream[pb.RestoreRequest]) (*pb.RestoreResponse, error) {
	st := &clientStream[pb.RestoreRequest, pb.RestoreResponse]{stream: stream{ctx: ctx}, in: in}
	if err := c.Server.Restore(st); err != nil {
		return nil, err
	}
	return st.out, nil
}
