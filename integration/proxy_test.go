package integration

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
)

// faultProxy is a TCP proxy to upstream that a test breaks with toxics
// (Shopify's toxiproxy, in-process).
func faultProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, "fault", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, spec string) {
	t.Helper()
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		t.Fatal(err)
	}
}

// Cloud Monitoring behind a fault proxy: while it stalls (every byte
// held) or resets every connection, KEDA's calls still answer within the
// HPA's 3 s, from memory: the last backlog while it is younger than
// --depth-max-age, then Unavailable (so KEDA's fallback engages), never
// 0. When Monitoring is back, the new backlog is seen again.
func TestMonitoringThroughAFaultProxy(t *testing.T) {
	ms := monitoringtest.Start(t)
	checked := subscriptionCheck(t)
	sub := "projects/proj-fault/subscriptions/transcribe"
	pubsubtest.Create(t, pubsubtest.Client(t, checked, "proj-fault"), sub)
	// Monitoring samples the backlog every 100 ms here.
	var backlog atomic.Int64
	backlog.Store(5)
	sampling, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		for sampling.Err() == nil {
			ms.Set(sub, backlog.Load(), time.Now())
			time.Sleep(100 * time.Millisecond) // Monitoring's sampling, not synchronisation
		}
	}()
	proxy := faultProxy(t, ms.Addr)
	o := options(t, t.TempDir())
	o.PubSub, o.MonitoringEndpoint, o.MonitoringInsecure = app.PubSubMonitoring, proxy.Listen, true
	o.DepthRefresh, o.DepthMaxAge = 100*time.Millisecond, 3*time.Second
	d := start(t, o)
	ref := worker(sub, 1)
	ask := func() (float64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // the HPA's budget
		defer cancel()
		spec, err := d.keda.GetMetricSpec(ctx, ref)
		if err != nil {
			return 0, err
		}
		m, err := d.keda.GetMetrics(ctx, &kedapb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.GetMetricSpecs()[0].GetMetricName()})
		if err != nil {
			return 0, err
		}
		a, err := d.keda.IsActive(ctx, ref)
		if err != nil {
			return 0, err
		}
		if !a.GetResult() && m.GetMetricValues()[0].GetMetricValueFloat() > 0 {
			t.Fatalf("inactive with a backlog of %v", m.GetMetricValues()[0].GetMetricValueFloat())
		}
		return m.GetMetricValues()[0].GetMetricValueFloat(), nil
	}
	pollFor(t, 10*time.Second, "the backlog of 5 through the proxy", func() bool { v, err := ask(); return err == nil && v == 5 })

	for _, fault := range []struct{ name, toxic string }{
		{"stall", `{"name":"stall","type":"timeout","stream":"downstream","toxicity":1,"attributes":{"timeout":0}}`},
		{"reset", `{"name":"reset","type":"reset_peer","stream":"downstream","toxicity":1,"attributes":{"timeout":0}}`},
	} {
		addToxic(t, proxy, fault.toxic)
		backlog.Store(backlog.Load() + 4) // unseen until Monitoring is back
		blind := false
		deadline := time.Now().Add(20 * time.Second)
		for !blind {
			v, err := ask()
			switch {
			case status.Code(err) == codes.Unavailable:
				blind = true
			case err != nil:
				t.Fatalf("%s: KEDA was told %v; want the last backlog, then Unavailable", fault.name, err)
			case v == 0:
				t.Fatalf("%s: KEDA was told 0 while Monitoring cannot be read", fault.name)
			case v != float64(backlog.Load()-4):
				t.Fatalf("%s: KEDA was told %v; want the last backlog read (%d)", fault.name, v, backlog.Load()-4)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still answering the last backlog 20 s into the fault, with --depth-max-age 3s", fault.name)
			}
		}
		if err := proxy.Toxics.RemoveToxic(context.Background(), fault.name); err != nil {
			t.Fatal(err)
		}
		want := float64(backlog.Load())
		pollFor(t, 20*time.Second, fault.name+": the new backlog once Monitoring is back", func() bool { v, err := ask(); return err == nil && v == want })
	}
}
