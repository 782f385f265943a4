package scaler_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/internal/clocktest"
	"github.com/orgscaler/orgscaler/scaler"
)

type env struct {
	clock  *clocktest.Clock
	store  *activity.Store
	client kedapb.ExternalScalerClient
	stop   func() // ends every stream, as a scaler shutting down does
}

// newEnv serves KEDA's service over loopback TCP, on a real Badger store,
// and dials it with KEDA's own generated client.
func newEnv(t *testing.T, now func() time.Time) *env {
	t.Helper()
	c := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if now == nil {
		now = c.Now
	}
	store, err := activity.Open(activity.Options{
		Dir: t.TempDir(), IdleWindow: 24 * time.Hour, FlushInterval: 10 * time.Second, Now: now,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	srv := grpc.NewServer()
	kedapb.RegisterExternalScalerServer(srv, scaler.New(scaler.Options{Orgs: store, Now: now, Done: done}))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { close(done); srv.GracefulStop() }) }
	t.Cleanup(func() {
		_ = conn.Close()
		stop()
		_ = store.Close()
	})
	return &env{clock: c, store: store, client: kedapb.NewExternalScalerClient(conn), stop: stop}
}

func ref(md map[string]string) *kedapb.ScaledObjectRef {
	return &kedapb.ScaledObjectRef{Name: "so", Namespace: "ns", ScalerMetadata: md}
}

var pynodeAcme = map[string]string{"workload": "pynode", "org": "acme", "scalerAddress": "scaler.keda:9090"}

func isActive(t *testing.T, e *env, md map[string]string) bool {
	t.Helper()
	r, err := e.client.IsActive(context.Background(), ref(md))
	if err != nil {
		t.Fatal(err)
	}
	return r.GetResult()
}

func metric(t *testing.T, e *env, md map[string]string) (string, float64) {
	t.Helper()
	spec, err := e.client.GetMetricSpec(context.Background(), ref(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.GetMetricSpecs()) != 1 || spec.GetMetricSpecs()[0].GetTargetSizeFloat() != 1 || spec.GetMetricSpecs()[0].GetTargetSize() != 1 {
		t.Fatalf("want one metric with target 1, got %v", spec)
	}
	name := spec.GetMetricSpecs()[0].GetMetricName()
	m, err := e.client.GetMetrics(context.Background(), &kedapb.GetMetricsRequest{ScaledObjectRef: ref(md), MetricName: name})
	if err != nil {
		t.Fatal(err)
	}
	v := m.GetMetricValues()
	if len(v) != 1 || v[0].GetMetricName() != name || float64(v[0].GetMetricValue()) != v[0].GetMetricValueFloat() {
		t.Fatalf("want one value named %s with equal int and float, got %v", name, m)
	}
	return name, v[0].GetMetricValueFloat()
}

// A fresh org is active from the first question; after its window it is
// inactive with 0 replicas; activity brings it back.
func TestPynodeFollowsOrgActivity(t *testing.T) {
	e := newEnv(t, nil)
	t0 := e.clock.Now()
	if !isActive(t, e, pynodeAcme) {
		t.Fatal("an org never seen before must count as active")
	}
	if _, v := metric(t, e, pynodeAcme); v != 1 {
		t.Fatalf("active pynode: want 1 replica, got %v", v)
	}
	e.clock.Set(t0.Add(24*time.Hour - time.Second))
	if !isActive(t, e, pynodeAcme) {
		t.Fatal("inactive before its window passed")
	}
	e.clock.Set(t0.Add(24 * time.Hour))
	if isActive(t, e, pynodeAcme) {
		t.Fatal("active after its window passed")
	}
	if _, v := metric(t, e, pynodeAcme); v != 0 {
		t.Fatalf("inactive pynode: want 0 replicas, got %v", v)
	}
	e.store.Record("acme")
	if !isActive(t, e, pynodeAcme) {
		t.Fatal("activity did not make the pynode active")
	}
}

func TestWarmForAndScaleToZeroOff(t *testing.T) {
	e := newEnv(t, nil)
	t0 := e.clock.Now()
	model := map[string]string{"workload": "model", "org": "acme", "warmFor": "1h"}
	e.store.Record("acme")
	e.clock.Set(t0.Add(time.Hour))
	if isActive(t, e, model) {
		t.Fatal("model warm past its warmFor")
	}
	if !isActive(t, e, pynodeAcme) {
		t.Fatal("pynode cold within the org's window")
	}
	off := false
	if _, err := e.store.Update(context.Background(), "acme", activity.Update{ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(t0.Add(1000 * time.Hour))
	if !isActive(t, e, model) || !isActive(t, e, pynodeAcme) {
		t.Fatal("an org with scale to zero off must stay active")
	}
}

func TestGetMetricsWrongName(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.client.GetMetrics(context.Background(), &kedapb.GetMetricsRequest{ScaledObjectRef: ref(pynodeAcme), MetricName: "other"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("want NotFound naming the metric, got %v", err)
	}
}

func TestBacklogNotYetAvailable(t *testing.T) {
	e := newEnv(t, nil)
	md := map[string]string{"workload": "worker", "subscription": "projects/my-proj/subscriptions/jobs"}
	_, err := e.client.IsActive(context.Background(), ref(md))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "projects/my-proj/subscriptions/jobs") {
		t.Fatalf("want FailedPrecondition naming the subscription, got %v", err)
	}
}

func TestBadMetadata(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		md   map[string]string
		want []string
	}{
		{map[string]string{"org": "acme"}, []string{`"workload"`, "missing"}},
		{map[string]string{"workload": "gpu", "org": "acme"}, []string{`"workload"`, `"gpu"`, "pynode"}},
		{map[string]string{"workload": "pynode"}, []string{`"org"`, "missing"}},
		{map[string]string{"workload": "pynode", "org": "a/b"}, []string{`"org"`, `"a/b"`, "1 to 128"}},
		{map[string]string{"workload": "worker", "subscription": "jobs"}, []string{`"subscription"`, `"jobs"`, "projects/"}},
		{map[string]string{"workload": "pynode", "org": "a", "messagesPerReplica": "-3"}, []string{`"messagesPerReplica"`, `"-3"`, ">= 1"}},
		{map[string]string{"workload": "pynode", "org": "a", "activationBacklog": "x"}, []string{`"activationBacklog"`, `"x"`, ">= 0"}},
		{map[string]string{"workload": "model", "org": "a", "warmFor": "soon"}, []string{`"warmFor"`, `"soon"`, "duration"}},
		{map[string]string{"workload": "pynode", "org": "a", "orgg": "b"}, []string{`"orgg"`, "is not a known key"}},
	}
	for _, tt := range tests {
		for name, call := range map[string]func() error{
			"IsActive": func() error { _, err := e.client.IsActive(context.Background(), ref(tt.md)); return err },
			"GetMetricSpec": func() error {
				_, err := e.client.GetMetricSpec(context.Background(), ref(tt.md))
				return err
			},
			"GetMetrics": func() error {
				_, err := e.client.GetMetrics(context.Background(), &kedapb.GetMetricsRequest{ScaledObjectRef: ref(tt.md), MetricName: "x"})
				return err
			},
			"StreamIsActive": func() error {
				s, err := e.client.StreamIsActive(context.Background(), ref(tt.md))
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			},
			"StreamMetricSpec": func() error {
				s, err := e.client.StreamMetricSpec(context.Background(), ref(tt.md))
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			},
		} {
			err := call()
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s %v: want InvalidArgument, got %v", name, tt.md, err)
				continue
			}
			for _, w := range tt.want {
				if !strings.Contains(status.Convert(err).Message(), w) {
					t.Errorf("%s %v: message %q lacks %s", name, tt.md, status.Convert(err).Message(), w)
				}
			}
		}
	}
	if orgs, _ := e.store.List(activity.All, "", 10); len(orgs) != 0 {
		t.Fatalf("rejected calls must not create orgs, got %v", orgs)
	}
}

func TestStreamMetricSpec(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := e.client.StreamMetricSpec(ctx, ref(pynodeAcme))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := metric(t, e, pynodeAcme)
	if got.GetMetricSpecs()[0].GetMetricName() != want {
		t.Fatalf("stream sent %v, GetMetricSpec says %s", got, want)
	}
	e.stop()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("want the stream held open until the server stops, then EOF; got %v", err)
	}
}

type push struct {
	at     time.Time
	active bool
}

func recvAll(s kedapb.ExternalScaler_StreamIsActiveClient) <-chan push {
	c := make(chan push, 16)
	go func() {
		defer close(c)
		for {
			r, err := s.Recv()
			if err != nil {
				return
			}
			c <- push{time.Now(), r.GetResult()}
		}
	}()
	return c
}

// A dormant org's stream gets true within 100 ms of its activity, and no
// second true while it stays active; it gets true again after going
// dormant and waking once more. Real clock; the org's window is set short
// to put it to sleep and long to keep it awake.
func TestStreamIsActivePushesWake(t *testing.T) {
	e := newEnv(t, time.Now)
	setWindow := func(d time.Duration) {
		t.Helper()
		if _, err := e.store.Update(context.Background(), "acme", activity.Update{IdleWindow: &d}); err != nil {
			t.Fatal(err)
		}
	}
	// The window must outlast the few milliseconds between the wake below
	// and setWindow(time.Hour), or the org really sleeps in between.
	e.store.Record("acme")
	setWindow(300 * time.Millisecond)
	waitDormant(t, e, "acme")

	s, err := e.client.StreamIsActive(context.Background(), ref(pynodeAcme))
	if err != nil {
		t.Fatal(err)
	}
	pushes := recvAll(s)
	waitWatched(t, e, "acme")

	start := time.Now()
	e.store.Record("acme")
	p := next(t, pushes)
	if !p.active {
		t.Fatal("pushed false")
	}
	if d := p.at.Sub(start); d > 100*time.Millisecond {
		t.Fatalf("true arrived %s after the activity, want within 100ms", d)
	}
	setWindow(time.Hour)
	for range 5 {
		e.store.Record("acme") // still active: nothing to push
	}
	setWindow(50 * time.Millisecond)
	waitDormant(t, e, "acme")
	e.store.Record("acme")
	if p := next(t, pushes); !p.active {
		t.Fatal("pushed false")
	}
	e.stop()
	for p := range pushes {
		t.Fatalf("pushed %v more than once per wake", p.active)
	}
}

func TestStreamIsActiveOnOpenWhenActive(t *testing.T) {
	e := newEnv(t, nil)
	s, err := e.client.StreamIsActive(context.Background(), ref(pynodeAcme))
	if err != nil {
		t.Fatal(err)
	}
	pushes := recvAll(s)
	if p := next(t, pushes); !p.active {
		t.Fatal("want true on open for an active workload")
	}
}

// warmFor runs out at its exact instant on a real clock: the stream sees
// the workload go cold and pushes true again on the next activity.
func TestStreamWarmForExpiry(t *testing.T) {
	e := newEnv(t, time.Now)
	model := map[string]string{"workload": "model", "org": "acme", "warmFor": "200ms"}
	s, err := e.client.StreamIsActive(context.Background(), ref(model))
	if err != nil {
		t.Fatal(err)
	}
	pushes := recvAll(s)
	first := next(t, pushes)
	deadline := time.Now().Add(5 * time.Second)
	for isActive(t, e, model) {
		if time.Now().After(deadline) {
			t.Fatal("model still active long after warmFor")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(first.at); d < 150*time.Millisecond {
		t.Fatalf("went cold after %s, before its 200ms warmFor", d)
	}
	e.store.Record("acme") // the org itself stayed active all along
	if p := next(t, pushes); !p.active {
		t.Fatal("want true when the model turns active again")
	}
}

func next(t *testing.T, c <-chan push) push {
	t.Helper()
	select {
	case p, ok := <-c:
		if !ok {
			t.Fatal("stream ended")
		}
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no push within 5s")
	}
	return push{}
}

func waitDormant(t *testing.T, e *env, org string) {
	t.Helper()
	poll(t, func() bool {
		o, _ := e.store.Get(org)
		return o.Dormant()
	})
}

// waitWatched waits until the stream has subscribed to the org: a pushed
// answer is otherwise racing the stream's setup.
func waitWatched(t *testing.T, e *env, org string) {
	t.Helper()
	poll(t, func() bool { return e.store.Watchers(org) > 0 })
}

func poll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
