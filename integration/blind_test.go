package integration

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// A scaler (re)started while Monitoring lags by more than the max age: the
// newest point, 10 minutes old, says 10,000 messages. KEDA must never be
// told 0 or inactive: GetMetrics and IsActive are Unavailable (fallback
// engages), and a dormant org's model, blind on its backlog, still wakes
// through its stream at once.
func TestRestartWhileMonitoringLags(t *testing.T) {
	ms := monitoringtest.Start(t)
	checked := subscriptionCheck(t)
	sub := "projects/proj-lag/subscriptions/transcribe"
	pubsubtest.Create(t, pubsubtest.Client(t, checked, "proj-lag"), sub)
	ms.Set(sub, 10_000, time.Now().Add(-10*time.Minute))

	o := options(t, t.TempDir())
	o.PubSub, o.MonitoringEndpoint, o.MonitoringInsecure = app.PubSubMonitoring, ms.Addr, true
	o.DepthRefresh = 100 * time.Millisecond
	d := start(t, o)
	ctx := context.Background()

	ref := worker(sub, 1)
	_, _, _ = state(d, ref) // KEDA names it: tracked, fetched in the background
	poll(t, "the stale point fetched", func() bool {
		out, _ := d.ctl(t, "depth")
		return strings.Contains(out, "older than the depth max age")
	})
	for range 20 {
		spec, err := d.keda.GetMetricSpec(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		m, err := d.keda.GetMetrics(ctx, &kedapb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.GetMetricSpecs()[0].GetMetricName()})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), sub) {
			t.Fatalf("GetMetrics on a 10-minute-old point of 10000: want Unavailable naming the subscription, got %v %v", m, err)
		}
		a, err := d.keda.IsActive(ctx, ref)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("IsActive with no last answer while blind: want Unavailable, got %v %v", a, err)
		}
	}

	// A model of a dormant org on the same blind subscription: its stream
	// pushes true the moment the org wakes.
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "sleepy", IdleWindow: durationOf(time.Second)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "sleepy dormant", func() bool {
		got, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "sleepy"})
		return err == nil && got.GetOrg().GetState() == pb.Org_STATE_DORMANT
	})
	model := &kedapb.ScaledObjectRef{Namespace: "ml", Name: "model-sleepy", ScalerMetadata: map[string]string{
		"workload": "model", "org": "sleepy", "subscription": sub}}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.keda.StreamIsActive(sctx, model)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make(chan time.Time, 1)
	go func() {
		if r, err := stream.Recv(); err == nil && r.GetResult() {
			pushed <- time.Now()
		}
	}()
	poll(t, "the stream watches sleepy", func() bool {
		got, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "sleepy"})
		return err == nil && got.GetOrg().GetState() == pb.Org_STATE_DORMANT && ctlOK(d, t, "explain", "ml/model-sleepy")
	})
	select {
	case <-pushed:
		t.Fatal("a dormant org on a blind backlog must not be pushed active")
	default:
	}
	woke := time.Now()
	if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "sleepy"}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-pushed:
		t.Logf("blind backlog, org woke: true pushed in %s", at.Sub(woke))
	case <-time.After(5 * time.Second):
		t.Fatal("the org woke while its backlog was blind: the stream must push true at once")
	}
}

// Two hints of the largest count leave a worker active with the largest
// replica count: the sum saturates, never overflowing into a negative or
// empty backlog.
func TestHintsCannotOverflow(t *testing.T) {
	o := options(t, t.TempDir())
	o.PubSub, o.PubSubListen = app.PubSubEmbedded, "127.0.0.1:0"
	d := start(t, o)
	sub := "projects/demo-project/subscriptions/huge"
	pubsubtest.Create(t, pubsubtest.Client(t, d.app.PubSubAddr(), "demo-project"), sub)
	// A hint stands until the source shows a point observed after it, so
	// let the first fetch land before hinting: otherwise it may supersede
	// both hints with the emulator's empty backlog before KEDA asks.
	poll(t, "the emulator's first point for huge", func() bool {
		_, _, err := state(d, worker(sub, 1))
		return err == nil
	})
	ctx := context.Background()
	for range 2 {
		if _, err := d.act.Hint(ctx, &pb.HintRequest{Subscription: sub, Messages: math.MaxInt64}); err != nil {
			t.Fatal(err)
		}
	}
	active, replicas, err := state(d, worker(sub, 1))
	if err != nil || !active || replicas != float64(math.MaxInt64) {
		t.Fatalf("two hints of MaxInt64: want active with %v replicas, got %v %v %v", float64(math.MaxInt64), active, replicas, err)
	}
}

func ctlOK(d *daemon, t *testing.T, args ...string) bool {
	_, err := d.ctl(t, args...)
	return err == nil
}
