package integration

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/certtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/tlsconfig"
)

// With the API served over TLS, a replica that starts empty dials its peer
// over TLS (--peer-tls-ca), checks the peer's certificate, and loads the
// snapshot before it is ready.
func TestEmptyReplicaJoinsOverTLS(t *testing.T) {
	replicationTopic(t)
	dir := t.TempDir()
	ca := certtest.NewCA(t, "orgscaler peers CA")
	cert, key := ca.Issue(t, certtest.Spec{CommonName: "orgscaler"}).Write(t, dir, "api")
	caFile := filepath.Join(dir, "ca.pem")
	certtest.WriteFile(t, caFile, ca.PEM)
	plain := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	apiTLS := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}))}
	replica := func(id string, peers ...string) *daemon {
		o := options(t, t.TempDir())
		o.Replication, o.ReplicationTopic, o.ReplicaID, o.Peers = app.ReplicationPubSub, replTopic, id, append(peers, noPeer)
		o.APITLS = tlsconfig.Files{Cert: cert, Key: key}
		o.PeerTLSCA = caFile
		d := startWith(t, o, plain, apiTLS)
		health := healthpb.NewHealthClient(d.dial(t, d.app.Addr()))
		poll(t, id+" ready", func() bool {
			h, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING
		})
		return d
	}
	first := replica("tls-0")
	if _, err := first.act.RecordActivity(context.Background(), &pb.RecordActivityRequest{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	joined := replica("tls-1", first.app.APIAddr())
	if got := digests(t, []*daemon{first, joined}); !agree(got) || got[0][len(got[0])-2:] != "/1" {
		t.Fatalf("the replica that joined over TLS holds %v; want the first's one org", got)
	}
}
