package integration

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/pubsubdepth"
)

func worker(sub string, perReplica int) *kedapb.ScaledObjectRef {
	return &kedapb.ScaledObjectRef{Name: "gpu-worker", Namespace: "workers", ScalerMetadata: map[string]string{
		"scalerAddress": "orgscaler.keda:9090", "workload": "worker", "subscription": sub,
		"messagesPerReplica": fmt.Sprint(perReplica),
	}}
}

// state asks as KEDA does; ok is false while the scaler answers with an error.
func state(d *daemon, ref *kedapb.ScaledObjectRef) (active bool, replicas float64, err error) {
	ctx := context.Background()
	spec, err := d.keda.GetMetricSpec(ctx, ref)
	if err != nil {
		return false, 0, err
	}
	m, err := d.keda.GetMetrics(ctx, &kedapb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.GetMetricSpecs()[0].GetMetricName()})
	if err != nil {
		return false, 0, err
	}
	a, err := d.keda.IsActive(ctx, ref)
	if err != nil {
		return false, 0, err
	}
	return a.GetResult(), m.GetMetricValues()[0].GetMetricValueFloat(), nil
}

// The README's walkthrough: publish to the embedded Pub/Sub, watch the
// worker's target replicas follow ceil(N / messagesPerReplica), ack, see
// it go inactive; a hint pushes true at once.
func TestWorkerOnEmbeddedPubSub(t *testing.T) {
	o := options(t, t.TempDir())
	o.PubSub, o.PubSubListen, o.DepthRefresh = app.PubSubEmbedded, "127.0.0.1:0", 100*time.Millisecond
	d := start(t, o)
	ps := pubsubtest.Client(t, d.app.PubSubAddr(), "demo")
	topic, sub := "projects/demo/topics/transcribe", "projects/demo/subscriptions/transcribe"
	pubsubtest.Create(t, ps, sub)
	ref := worker(sub, 5)

	want := func(what string, active bool, replicas float64) {
		t.Helper()
		var a bool
		var r float64
		var err error
		poll(t, what, func() bool {
			a, r, err = state(d, ref)
			return err == nil && a == active && r == replicas
		})
	}
	want("empty queue", false, 0)

	pub := ps.Publisher(topic)
	for i := range 12 {
		if _, err := pub.Publish(context.Background(), &pubsub.Message{Data: []byte(fmt.Sprint(i))}).Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	pub.Stop()
	want("12 messages, 5 per replica", true, math.Ceil(12.0/5))

	// A worker takes them all and acks.
	ctx, cancel := context.WithCancel(context.Background())
	acked := make(chan struct{}, 12)
	go func() {
		_ = ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) { m.Ack(); acked <- struct{}{} })
	}()
	for range 12 {
		select {
		case <-acked:
		case <-time.After(10 * time.Second):
			t.Fatal("messages not received")
		}
	}
	want("all acked", false, 0)
	cancel()

	// A hint turns the worker active at once, before any depth data.
	stream, err := d.keda.StreamIsActive(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	got := trues(stream, time.Now)
	sent := time.Now()
	if _, err := d.act.Hint(context.Background(), &pb.HintRequest{Subscription: sub, Org: "acme", Messages: 3}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		if lag := at.Sub(sent); lag > 100*time.Millisecond {
			t.Fatalf("push %s after the hint, want within 100ms", lag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no push after the hint")
	}
	if o, err := d.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "acme"}); err != nil || o.GetOrg().GetLastActivity() == nil {
		t.Fatalf("a hint naming an org is its activity: %v %v", o, err)
	}
	out, err := d.ctl(t, "depth")
	if err != nil || !strings.Contains(out, sub) {
		t.Fatalf("scalerctl depth should list %s: %v\n%s", sub, err, out)
	}
}

func TestMissingSubscriptionIsNotFound(t *testing.T) {
	o := options(t, t.TempDir())
	o.PubSub, o.PubSubListen, o.DepthRefresh = app.PubSubEmbedded, "127.0.0.1:0", 100*time.Millisecond
	d := start(t, o)
	missing := "projects/demo/subscriptions/no-such-thing"
	var err error
	poll(t, "NotFound", func() bool {
		_, err = d.keda.GetMetricSpec(context.Background(), worker(missing, 1))
		return status.Code(err) == codes.NotFound
	})
	if !strings.Contains(err.Error(), missing) {
		t.Fatalf("NotFound should name %s: %v", missing, err)
	}
	if _, err := d.keda.IsActive(context.Background(), worker(missing, 1)); status.Code(err) != codes.NotFound {
		t.Fatalf("IsActive: want NotFound, got %v", err)
	}

	// A stream on the missing subscription stays open: when the producer
	// creates it and hints, the push comes at once, not after KEDA's
	// reconnect backoff.
	stream, err := d.keda.StreamIsActive(context.Background(), worker(missing, 1))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan bool, 1)
	go func() {
		r, err := stream.Recv()
		if err != nil {
			close(got)
			return
		}
		got <- r.GetResult()
	}()
	pubsubtest.Create(t, pubsubtest.Client(t, d.app.PubSubAddr(), "demo"), missing)
	if _, err := d.act.Hint(context.Background(), &pb.HintRequest{Subscription: missing, Messages: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case v, ok := <-got:
		if !ok || !v {
			t.Fatalf("want a pushed true, got %v (stream open: %v)", v, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push after the subscription was created and hinted")
	}
}

func TestHintBadInput(t *testing.T) {
	o := options(t, t.TempDir())
	o.PubSub, o.PubSubListen = app.PubSubEmbedded, "127.0.0.1:0"
	d := start(t, o)
	for _, tt := range []struct {
		req  *pb.HintRequest
		want string
	}{
		{&pb.HintRequest{Subscription: "jobs", Messages: 1}, `subscription is "jobs"`},
		{&pb.HintRequest{Subscription: "projects/demo/subscriptions/jobs", Messages: -1}, "messages is -1"},
		{&pb.HintRequest{Subscription: "projects/demo/subscriptions/jobs", Org: "a b", Messages: 1}, `org is "a b"`},
	} {
		_, err := d.act.Hint(context.Background(), tt.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: want InvalidArgument with %q, got %v", tt.req, tt.want, err)
		}
	}
	if _, err := d.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "a"}); status.Code(err) != codes.NotFound {
		t.Fatal("a rejected hint must not record activity")
	}
}

// Production path: Cloud Monitoring (served by the test) for hundreds of
// subscriptions in three projects; blind past the max age.
func TestWorkersOnMonitoring(t *testing.T) {
	ms := monitoringtest.Start(t)
	checked := subscriptionCheck(t)

	o := options(t, t.TempDir())
	o.PubSub, o.MonitoringEndpoint, o.MonitoringInsecure = app.PubSubMonitoring, ms.Addr, true
	o.DepthRefresh, o.DepthMaxAge = 100*time.Millisecond, 3*time.Second
	d := start(t, o)

	var subs []string
	for _, p := range []string{"proj-a", "proj-b", "proj-c"} {
		ps := pubsubtest.Client(t, checked, p)
		for i := range 100 {
			sub := fmt.Sprintf("projects/%s/subscriptions/jobs-%03d", p, i)
			pubsubtest.Create(t, ps, sub)
			ms.Set(sub, int64(i%7), time.Now())
			subs = append(subs, sub)
		}
	}
	// Monitoring samples every subscription while the test runs.
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-sampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for i, sub := range subs {
				ms.Set(sub, int64(i%7), time.Now())
			}
		}
	}()
	for _, sub := range subs {
		_, _, _ = state(d, worker(sub, 2)) // KEDA names every subscription
	}
	for i, sub := range subs {
		var active bool
		var replicas float64
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for {
			active, replicas, err = state(d, worker(sub, 2))
			if err == nil && active == (i%7 > 0) && replicas == math.Ceil(float64(i%7)/2) {
				break
			}
			if time.Now().After(deadline) {
				out, _ := d.ctl(t, "depth")
				t.Fatalf("%s: got %v %v %v\n%s", sub, active, replicas, err, out)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A refresh is one query per project, covering all of its tracked
	// subscriptions.
	n := len(ms.Requests())
	poll(t, "more refreshes", func() bool { return len(ms.Requests()) >= n+9 })
	reqs := ms.Requests()
	reqs = reqs[len(reqs)-3:]
	for _, r := range reqs {
		if c := strings.Count(r.GetFilter(), `"jobs-`); c != 100 {
			t.Fatalf("a query named %d subscriptions, want all 100 of %s", c, r.GetName())
		}
	}

	// Monitoring stops sampling: past the max age GetMetrics is Unavailable
	// naming the subscription, and IsActive keeps its last answer.
	close(sampling)
	<-sampled
	busy := subs[5]
	ref := worker(busy, 2)
	var gerr error
	poll(t, "blind", func() bool {
		_, _, gerr = state(d, ref)
		return status.Code(gerr) == codes.Unavailable
	})
	if !strings.Contains(gerr.Error(), busy) {
		t.Fatalf("Unavailable should name %s: %v", busy, gerr)
	}
	a, err := d.keda.IsActive(context.Background(), ref)
	if err != nil || !a.GetResult() {
		t.Fatalf("blind IsActive must keep its last answer (true), got %v %v", a, err)
	}

	// Monitoring down past the max age: the KEDA port's health turns
	// NOT_SERVING (readiness), while liveness stays SERVING.
	ms.SetFail(status.Error(codes.Internal, "monitoring is down"))
	hc := healthpb.NewHealthClient(d.dial(t, d.app.Addr()))
	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	poll(t, "NOT_SERVING while blind", func() bool { return check("") == healthpb.HealthCheckResponse_NOT_SERVING })
	if st := check(app.LivenessService); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("liveness must stay SERVING, got %v", st)
	}
	// The HTTP probes (for a KEDA port on TLS) say the same.
	if code, body := httpGet(t, "http://"+d.app.MetricsAddr()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "NOT_SERVING") {
		t.Fatalf("/readyz while blind: %d %q", code, body)
	}
	if code, _ := httpGet(t, "http://"+d.app.MetricsAddr()+"/livez"); code != http.StatusOK {
		t.Fatalf("/livez while blind: %d", code)
	}
	ms.SetFail(nil)
	for _, sub := range subs[:3] {
		ms.Set(sub, 1, time.Now())
	}
	poll(t, "SERVING again", func() bool { return check("") == healthpb.HealthCheckResponse_SERVING })
	if code, body := httpGet(t, "http://"+d.app.MetricsAddr()+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "SERVING" {
		t.Fatalf("/readyz once fresh: %d %q", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// trues reads a StreamIsActive stream until it ends, and sends when (by
// now) each true arrived; a true nobody is waiting for is dropped.
func trues(stream grpc.ServerStreamingClient[kedapb.IsActiveResponse], now func() time.Time) <-chan time.Time {
	pushed := make(chan time.Time, 4)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			if r.GetResult() {
				select {
				case pushed <- now():
				default:
				}
			}
		}
	}()
	return pushed
}

// subscriptionCheck starts the Pub/Sub API the scaler's subscription check
// asks (PUBSUB_EMULATOR_HOST, for the test), when the backlog comes from
// Cloud Monitoring, and returns its address, to create subscriptions on.
func subscriptionCheck(t *testing.T) string {
	t.Helper()
	emb, err := pubsubdepth.StartEmbedded("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Close() })
	t.Setenv("PUBSUB_EMULATOR_HOST", emb.Addr())
	return emb.Addr()
}
