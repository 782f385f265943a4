package replication

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// peerServer is a peer's API over loopback: its digest, and a snapshot of
// one org that, when stall is set, stops after its first chunk.
type peerServer struct {
	pb.UnimplementedAdminServiceServer
	replica, org string
	stall        bool
}

func (p *peerServer) Digest(context.Context, *pb.DigestRequest) (*pb.DigestResponse, error) {
	return &pb.DigestResponse{Replica: p.replica, Orgs: 1, Digest: "x"}, nil
}

func (p *peerServer) Snapshot(_ *pb.SnapshotRequest, s pb.AdminService_SnapshotServer) error {
	if err := s.Send(&pb.SnapshotResponse{Changes: []*pb.OrgChange{{Org: p.org, ActivityUnixNano: time.Now().UnixNano()}}}); err != nil {
		return err
	}
	if p.stall {
		<-s.Context().Done() // a peer wedged mid-snapshot
	}
	return nil
}

func servePeer(t *testing.T, p *peerServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterAdminServiceServer(s, p)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// A peer that stalls mid-snapshot is given up after the chunk timeout and
// the next peer asked: a joining replica is not held not-ready forever by
// one wedged peer.
func TestBootstrapPastAStalledPeer(t *testing.T) {
	stuck := servePeer(t, &peerServer{replica: "stuck", org: "partial", stall: true})
	good := servePeer(t, &peerServer{replica: "good", org: "whole"})
	r, _, _, store, _ := testReplicator(time.Now())
	done := make(chan error, 1)
	var from string
	go func() {
		var err error
		_, from, err = r.bootstrap(context.Background(), Peers{Addrs: []string{stuck, good}, Self: "me", ChunkTimeout: 300 * time.Millisecond}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || from != "good" {
			t.Fatalf("bootstrap past a stalled peer: from %q, %v; want the good peer's snapshot", from, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("bootstrap still waiting on a peer stalled mid-snapshot")
	}
	if _, ok := store.get("whole"); !ok {
		t.Fatal("the good peer's org is not here")
	}
}
