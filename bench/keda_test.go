package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orgscaler/orgscaler/app"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/trigger"
)

// bareScaler answers KEDA's proto with constants: the cost of gRPC alone.
type bareScaler struct {
	kedapb.UnimplementedExternalScalerServer
}

func (bareScaler) IsActive(context.Context, *kedapb.ScaledObjectRef) (*kedapb.IsActiveResponse, error) {
	return &kedapb.IsActiveResponse{Result: true}, nil
}

func (bareScaler) GetMetrics(_ context.Context, r *kedapb.GetMetricsRequest) (*kedapb.GetMetricsResponse, error) {
	return &kedapb.GetMetricsResponse{MetricValues: []*kedapb.MetricValue{{MetricName: r.GetMetricName(), MetricValue: 1, MetricValueFloat: 1}}}, nil
}

func startBare(b *testing.B) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	kedapb.RegisterExternalScalerServer(s, bareScaler{})
	go func() { _ = s.Serve(lis) }()
	b.Cleanup(s.Stop)
	return lis.Addr().String()
}

// startOurs runs the whole scaler in this process, as tests do.
func startOurs(b *testing.B, o app.Options) *app.App {
	o.Listen, o.APIListen, o.MetricsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if o.DataDir == "" {
		o.DataDir = b.TempDir()
	}
	o.Logger = slog.New(slog.DiscardHandler)
	if f := os.Getenv("BENCH_LOG"); f != "" {
		w, _ := os.Create(f)
		o.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := app.New(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return a
}

func dial(b *testing.B, addr string) *grpc.ClientConn {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// kedaClients are a few connections, as KEDA's operator and the HPA's
// metrics adapter keep.
type kedaClients []kedapb.ExternalScalerClient

func clients(b *testing.B, addr string, n int) kedaClients {
	var cs kedaClients
	for range n {
		cs = append(cs, kedapb.NewExternalScalerClient(dial(b, addr)))
	}
	return cs
}

// refs are 100 pynodes of 100 orgs, the metadata parsed on every call as
// KEDA sends it.
var refs = func() []*kedapb.ScaledObjectRef {
	var r []*kedapb.ScaledObjectRef
	for i := range 100 {
		r = append(r, &kedapb.ScaledObjectRef{Namespace: "orgs", Name: fmt.Sprintf("pynode-org-%d", i),
			ScalerMetadata: map[string]string{"scalerAddress": "orgscaler.keda:9090", "workload": "pynode", "org": fmt.Sprintf("org-%d", i)}})
	}
	return r
}()

func metricName(r *kedapb.ScaledObjectRef) string {
	w, err := trigger.ParseMetadata(r.GetScalerMetadata())
	if err != nil {
		panic(err)
	}
	return w.MetricName()
}

// calls returns IsActive and GetMetrics callers spreading over cs and refs.
func (cs kedaClients) calls() (isActive, getMetrics func(context.Context) error) {
	var n atomic.Uint64
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = metricName(r)
	}
	isActive = func(ctx context.Context) error {
		i := n.Add(1)
		_, err := cs[i%uint64(len(cs))].IsActive(ctx, refs[i%uint64(len(refs))])
		return err
	}
	getMetrics = func(ctx context.Context) error {
		i := n.Add(1)
		k := i % uint64(len(refs))
		_, err := cs[i%uint64(len(cs))].GetMetrics(ctx, &kedapb.GetMetricsRequest{ScaledObjectRef: refs[k], MetricName: names[k]})
		return err
	}
	return isActive, getMetrics
}

// size is a benchmark's scale: full for make bench, tiny for make test.
func size[T any](full, short T) T {
	if testing.Short() {
		return short
	}
	return full
}

// BenchmarkKEDAPort measures IsActive and GetMetrics against a bare gRPC
// server answering constants, same load generator, same run: the most
// calls per second 64 callers get, and the latency at a steady 10k calls a
// second.
func BenchmarkKEDAPort(b *testing.B) {
	d := size(8*time.Second, 200*time.Millisecond)
	rate := size(10_000, 500)
	bare := clients(b, startBare(b), 4)
	ours := clients(b, startOurs(b, app.Options{}).Addr(), 4)
	for _, r := range refs { // every org seen once, as after KEDA's first poll
		if _, err := ours[0].IsActive(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		for _, rpc := range []string{"IsActive", "GetMetrics"} {
			var qps [2]float64
			for i, cs := range []kedaClients{bare, ours} {
				isActive, getMetrics := cs.calls()
				call := map[string]func(context.Context) error{"IsActive": isActive, "GetMetrics": getMetrics}[rpc]
				qps[i], _ = closedLoop(b, 64, d, call)
				lat, late := openLoop(b, rate, d, call)
				who := [...]string{"bare", "ours"}[i]
				b.ReportMetric(ms(late.quantile(0.99)), fmt.Sprintf("%s-%s-sendlate-p99-ms", who, rpc))
				b.ReportMetric(qps[i], fmt.Sprintf("%s-%s-qps", who, rpc))
				b.ReportMetric(ms(lat.quantile(0.5)), fmt.Sprintf("%s-%s-p50-ms", who, rpc))
				b.ReportMetric(ms(lat.quantile(0.99)), fmt.Sprintf("%s-%s-p99-ms", who, rpc))
			}
			b.ReportMetric(qps[1]/qps[0], rpc+"-qps-ratio")
		}
	}
}

// BenchmarkIsolation floods the activity API with 200k events a second
// (4 streams, 100k orgs, from another process as producers are) while
// IsActive is called at a steady 1k a second, and reports IsActive's p99
// with and without the flood, same run.
func BenchmarkIsolation(b *testing.B) {
	d := size(8*time.Second, 200*time.Millisecond)
	rate := size(200_000, 20_000)
	a := startOurs(b, app.Options{MaxOrgs: 10_000_000})
	isActive, _ := clients(b, a.Addr(), 2).calls()
	api := pb.NewActivityServiceClient(dial(b, a.APIAddr()))
	// The flood's orgs known first: it measures activity, not 100k new orgs.
	sendOnce(b, api, orgRequests(100_000))
	b.ResetTimer()
	for range b.N {
		quiet, _ := openLoop(b, 1000, d, isActive)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "BENCH_FLOOD_ADDR="+a.APIAddr(), "BENCH_FLOOD_RATE="+fmt.Sprint(rate))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		loud, _ := openLoop(b, 1000, d, isActive)
		took := time.Since(start)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("flood process: %v", err)
		}
		sent, err := strconv.ParseFloat(strings.TrimSpace(out.String()), 64)
		if err != nil {
			b.Fatalf("flood process printed %q", out.String())
		}
		got := sent / took.Seconds()
		b.ReportMetric(ms(quiet.quantile(0.99)), "quiet-IsActive-p99-ms")
		b.ReportMetric(ms(loud.quantile(0.99)), "flooded-IsActive-p99-ms")
		b.ReportMetric(got, "flood-events/s")
	}
}

// flood streams activity for 100k orgs at rate events a second, in
// batches of 1,000 a stream message after another, until ctx ends.
func flood(ctx context.Context, api pb.ActivityServiceClient, g, rate int, events *atomic.Int64) {
	reqs := make([]*pb.StreamActivityRequest, 100_000)
	for i := range reqs {
		reqs[i] = &pb.StreamActivityRequest{Org: fmt.Sprintf("org-%d", i)}
	}
	s, err := api.StreamActivity(ctx)
	if err != nil {
		return
	}
	const batch = 1000
	every := time.Duration(float64(time.Second) * batch / float64(rate))
	next := time.Now()
	for i := 0; ctx.Err() == nil; {
		for range batch {
			if s.Send(reqs[(g*7919+i*13)%len(reqs)]) != nil {
				return
			}
			i++
		}
		events.Add(batch)
		next = next.Add(every)
		time.Sleep(time.Until(next)) // pacing the load is the point
	}
}
