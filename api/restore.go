package api

import (
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Restore applies a backup's chunks (Snapshot's, written by scalerctl
// backup) to the stores, refusing a scaler that holds orgs unless the
// first message says merge.
func (s *Server) Restore(stream grpc.ClientStreamingServer[pb.RestoreRequest, pb.RestoreResponse]) error {
	if s.restore == nil {
		return status.Error(codes.Unimplemented, "restore is not available on this scaler")
	}
	resp := &pb.RestoreResponse{}
	first := true
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			resp.Orgs = int64(s.store.Len())
			return stream.SendAndClose(resp)
		}
		if err != nil {
			return err
		}
		if first {
			first = false
			// Len, not Digest: a count, without hashing every org.
			if n := s.store.Len(); n > 0 && !req.GetMerge() {
				return status.Errorf(codes.FailedPrecondition,
					"this scaler holds %d orgs: restore into one with an empty data dir, or merge (an org deleted since the backup was taken comes back; with --unseen-orgs=dormant, orgs KEDA's triggers named since the start merge to exactly the backup's)", n)
			}
		}
		n, err := s.restore(req.GetChunk())
		resp.Items += int64(n)
		if err != nil {
			return status.Errorf(codes.Unavailable, "restore stopped after %d items: %v; restoring again with merge is safe", resp.GetItems(), err)
		}
	}
}
