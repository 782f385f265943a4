package integration

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
)

// metricValue reads one sample of /metrics, 0 when absent.
func metricValue(t *testing.T, d *daemon, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(scrape(t, d))
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// Publish rights on the replication topic alone cannot steer the fleet:
// with a peer token, messages without the fleet's signature (a forged
// delete stamped MaxInt64, forged activity) are dropped and counted, and
// the replicas' own changes still flow.
func TestForgedReplicationMessages(t *testing.T) {
	em := pubsubtest.Start(t)
	token := filepath.Join(t.TempDir(), "peer-token")
	if err := os.WriteFile(token, []byte("s3cret-peer-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fleet := startFleetOn(t, em, 2, func(o *app.Options) { o.PeerTokenFile = token })
	a, b := fleet[0], fleet[1]
	ctx := context.Background()
	if _, err := a.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "victim"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "victim on B", func() bool { _, err := b.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "victim"}); return err == nil })

	c := pubsubtest.Client(t, em.Addr, "p-repl")
	pub := c.Publisher(replTopic)
	defer pub.Stop()
	forged, _ := proto.Marshal(&pb.ChangeBatch{Replica: "mallory", Changes: []*pb.OrgChange{
		{Org: "victim", DeletedAt: math.MaxInt64},
		{Org: "ghost", ActivityUnixNano: time.Now().Add(24 * time.Hour).UnixNano()},
	}})
	for _, attrs := range []map[string]string{nil, {"instance": "x", "started": "1", "mac": "00ff"}} {
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: forged, Attributes: attrs}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range fleet {
		pollFor(t, 20*time.Second, "both forged messages dropped", func() bool {
			return metricValue(t, d, `orgscaler_replication_rejected_total{reason="unauthenticated"}`) >= 2
		})
		if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "victim"}); err != nil {
			t.Fatalf("victim after a forged delete: %v", err)
		}
		if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "ghost"}); err == nil {
			t.Fatal("forged activity created an org")
		}
	}
	if _, err := a.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "legit"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a signed change on B", func() bool { _, err := b.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "legit"}); return err == nil })
}

// A replica whose clock is 10 minutes fast cannot keep orgs warm
// elsewhere for 10 minutes longer: the others hold its stamps to
// --max-clock-skew and count them; a delete on a right replica after
// that activity removes the org there, for good.
func TestFastReplicaHeldToTheSkewBound(t *testing.T) {
	a, fast := fastFleet(t, 10*time.Minute)
	ctx := context.Background()
	if _, err := fast.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "rushed"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the fast replica's activity on A", func() bool {
		_, err := a.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "rushed"})
		return err == nil
	})
	o, err := a.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "rushed"})
	if err != nil {
		t.Fatal(err)
	}
	if ahead := time.Until(o.GetOrg().GetLastActivity().AsTime()); ahead > replication.DefaultMaxClockSkew+time.Second {
		t.Fatalf("activity from a clock 10m fast is %s ahead on A; want at most the 30s bound", ahead.Round(time.Second))
	}
	// Counted once the message is applied, just after the org shows.
	poll(t, "orgscaler_replication_stamps_held_total counting the held stamp on A", func() bool {
		return metricValue(t, a, "orgscaler_replication_stamps_held_total") >= 1
	})
	if _, err := a.orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: "rushed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "rushed"}); !isNotFound(err) {
		t.Fatalf("rushed on A after its delete: %v; want NotFound", err)
	}
}

// A replica whose clock is 2 minutes fast measures itself and its peer
// against Pub/Sub's clock from their messages and, off from both, turns
// NOT_SERVING (KEDA's calls get Unavailable saying why); its peer shows
// its offset in orgscaler_replica_clock_offset_seconds and keeps serving.
// (A fleet whose clocks are all equally off keeps serving, as
// TestIdleTimesReplicate's shared test clock shows.)
func TestSkewedReplicaStopsServing(t *testing.T) {
	a, fast := fastFleet(t, 2*time.Minute)
	ctx := context.Background()
	// Each measures every replica from the messages it sees (heartbeats
	// every 30 s; activity here, sooner).
	for _, d := range []*daemon{a, fast} {
		if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
			t.Fatal(err)
		}
	}
	health := healthpb.NewHealthClient(fast.dial(t, fast.app.Addr()))
	poll(t, "the fast replica NOT_SERVING", func() bool {
		h, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if _, err := fast.keda.IsActive(ctx, pynode("acme")); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "--max-clock-skew") {
		t.Fatalf("KEDA asking the fast replica: %v; want Unavailable naming --max-clock-skew", err)
	}
	poll(t, "A sees the fast replica's offset", func() bool {
		v := metricValue(t, a, `orgscaler_replica_clock_offset_seconds{peer="scaler-fast"}`)
		return v > 110 && v < 130
	})
	if active, _ := answer(t, a, pynode("acme")); !active {
		t.Fatal("A, whose clock is right, does not answer")
	}
}

// fastFleet is a replica, and one whose clock is ahead by ahead.
func fastFleet(t *testing.T, ahead time.Duration) (a, fast *daemon) {
	t.Helper()
	fleet := startFleetOn(t, pubsubtest.Start(t), 1)
	fast = startReplica(t, "scaler-fast", t.TempDir(), fleet, func(o *app.Options) {
		o.Now = func() time.Time { return time.Now().Add(ahead) }
	})
	return fleet[0], fast
}
