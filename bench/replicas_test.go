package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// startReplicaBench starts one replica of the fleet on topic, with peers'
// API ports, and waits until it is ready.
func startReplicaBench(b *testing.B, id, topic string, peers []*app.App) *app.App {
	o := app.Options{Replication: app.ReplicationPubSub, ReplicationTopic: topic, ReplicaID: id, IdleWindow: time.Second}
	for _, p := range peers {
		o.Peers = append(o.Peers, p.APIAddr())
	}
	if len(o.Peers) == 0 {
		o.Peers = []string{"127.0.0.1:1"} // nothing there: the first of the fleet
	}
	a := startOurs(b, o)
	health := healthpb.NewHealthClient(dial(b, a.Addr()))
	deadline := time.Now().Add(time.Minute)
	for {
		h, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return a
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not ready within a minute: %v %v", id, h, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func digestOf(b *testing.B, a *app.App) string {
	r, err := pb.NewAdminServiceClient(dial(b, a.APIAddr())).Digest(context.Background(), &pb.DigestRequest{})
	if err != nil {
		b.Fatal(err)
	}
	return fmt.Sprintf("%s/%d", r.GetDigest(), r.GetOrgs())
}

// BenchmarkReplicas runs three replicas over Google's Pub/Sub emulator:
// the latency from activity sent to replica A to the true pushed on a
// stream held by replica C (org dormant before), and the time a fourth
// replica with an empty data dir takes to be ready with the fleet's
// digest, over a fleet holding many orgs.
func BenchmarkReplicas(b *testing.B) {
	addr := pubsubtest.StartEmulator(b)
	topic := "projects/p-bench/topics/orgs"
	if _, err := pubsubtest.Client(b, addr, "p-bench").TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: topic}); err != nil {
		b.Fatal(err)
	}
	var fleet []*app.App
	for i := range 3 {
		fleet = append(fleet, startReplicaBench(b, fmt.Sprintf("scaler-%d", i), topic, fleet))
	}
	orgs, samples, filled := size(200, 20), size(100, 10), size(20_000, 500)
	actA := pb.NewActivityServiceClient(dial(b, fleet[0].APIAddr()))
	kedaC := kedapb.NewExternalScalerClient(dial(b, fleet[2].Addr()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := make([]<-chan time.Time, orgs)
	for i := range streams {
		org := fmt.Sprintf("org-%d", i)
		if _, err := actA.RecordActivity(ctx, &pb.RecordActivityRequest{Org: org}); err != nil {
			b.Fatal(err)
		}
		streams[i] = pushed(b, ctx, kedaC, &kedapb.ScaledObjectRef{Namespace: "orgs", Name: "pynode-" + org,
			ScalerMetadata: map[string]string{"workload": "pynode", "org": org}})
	}
	time.Sleep(2500 * time.Millisecond) // the 1s window is the point: waiting it out is the setup
	for _, s := range streams {
		drain(s)
	}
	b.ResetTimer()
	for range b.N {
		var lat latencies
		for i := range samples {
			k := (i * 7919) % orgs
			sent := time.Now()
			if _, err := actA.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("org-%d", k)}); err != nil {
				b.Fatal(err)
			}
			select {
			case at := <-streams[k]:
				lat = append(lat, at.Sub(sent))
			case <-time.After(10 * time.Second):
				b.Fatalf("org-%d: no push from replica C within 10s", k)
			}
		}
		b.ReportMetric(ms(lat.quantile(0.5)), "cross-wake-p50-ms")
		b.ReportMetric(ms(lat.quantile(0.99)), "cross-wake-p99-ms")

		stream, err := actA.StreamActivity(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := range filled {
			if err := stream.Send(&pb.StreamActivityRequest{Org: fmt.Sprintf("fill-%d", i)}); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for digestOf(b, fleet[0]) != digestOf(b, fleet[2]) {
			if time.Now().After(deadline) {
				b.Fatal("the fleet does not agree within a minute")
			}
			time.Sleep(20 * time.Millisecond)
		}
		began := time.Now()
		joined := startReplicaBench(b, "scaler-new", topic, fleet)
		ready := time.Since(began)
		for digestOf(b, joined) != digestOf(b, fleet[0]) {
			if time.Now().After(deadline) {
				b.Fatal("the new replica does not agree within a minute")
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.ReportMetric(ready.Seconds(), "join-ready-s")
		b.ReportMetric(time.Since(began).Seconds(), "join-same-digest-s")
		b.ReportMetric(float64(filled+orgs), "orgs")
	}
}
