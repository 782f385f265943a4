package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// BenchmarkFaults measures what a replication outage costs KEDA: two
// replicas over Google's Pub/Sub emulator, IsActive at a steady rate on
// replica A while producers send it activity (each call waiting for
// replication), before and while the emulator is paused (SIGSTOP). The
// answers must not wait on Pub/Sub: the goal is a paused p99 at most 2x
// the healthy one, measured side by side in one run.
func BenchmarkFaults(b *testing.B) {
	em := pubsubtest.Start(b)
	topic := "projects/p-faults/topics/orgs"
	if _, err := pubsubtest.Client(b, em.Addr, "p-faults").TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: topic}); err != nil {
		b.Fatal(err)
	}
	a := startReplicaBench(b, "scaler-0", topic, nil)
	startReplicaBench(b, "scaler-1", topic, []*app.App{a})
	d, rate := size(8*time.Second, 300*time.Millisecond), size(1000, 200)
	keda := kedapb.NewExternalScalerClient(dial(b, a.Addr()))
	api := pb.NewActivityServiceClient(dial(b, a.APIAddr()))
	const orgs = 1000
	for i := range orgs {
		if _, err := api.RecordActivity(context.Background(), &pb.RecordActivityRequest{Org: fmt.Sprintf("org-%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	var n int
	var mu sync.Mutex
	isActive := func(ctx context.Context) error {
		mu.Lock()
		n++
		org := fmt.Sprintf("org-%d", n%orgs)
		mu.Unlock()
		_, err := keda.IsActive(ctx, &kedapb.ScaledObjectRef{Namespace: "orgs", Name: "pynode-" + org,
			ScalerMetadata: map[string]string{"workload": "pynode", "org": org}})
		return err
	}
	// Producers: 4 goroutines sending activity as fast as the API answers
	// (with a short deadline, as a producer should have).
	produce := func(ctx context.Context) {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := g; ctx.Err() == nil; i += 4 {
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					_, _ = api.RecordActivity(cctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("org-%d", i%orgs)})
					cancel()
				}
			})
		}
		wg.Wait()
	}
	b.ResetTimer()
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { produce(ctx); close(done) }()
		healthy, _ := openLoop(b, rate, d, isActive)
		em.Pause(b)
		paused, _ := openLoop(b, rate, d, isActive)
		em.Resume(b)
		cancel()
		<-done
		b.ReportMetric(ms(healthy.quantile(0.99)), "healthy-IsActive-p99-ms")
		b.ReportMetric(ms(paused.quantile(0.99)), "paused-IsActive-p99-ms")
		b.ReportMetric(float64(paused.quantile(0.99))/float64(healthy.quantile(0.99)), "paused-p99-ratio")
	}
}
