package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/orgscaler/orgscaler/app"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// pushed opens StreamIsActive for ref and returns a channel that gets the
// instant of every true pushed.
func pushed(b *testing.B, ctx context.Context, c kedapb.ExternalScalerClient, ref *kedapb.ScaledObjectRef) <-chan time.Time {
	s, err := c.StreamIsActive(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	out := make(chan time.Time, 4)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				return
			}
			if r.GetResult() {
				select {
				case out <- time.Now():
				default:
				}
			}
		}
	}()
	return out
}

// drain empties c of pushes already received.
func drain(c <-chan time.Time) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// BenchmarkWake opens a StreamIsActive for each of 10k orgs' pynodes, lets
// every org go dormant (a 1s idle window), then wakes orgs one at a time:
// the latency from the activity RPC's return to the stream's true (0 when
// the push came first), and from its send. Then
// one org with 100 workloads: from the RPC's return to each stream's true.
func BenchmarkWake(b *testing.B) {
	orgs := size(10_000, 200)
	samples := size(1_000, 50)
	a := startOurs(b, app.Options{IdleWindow: time.Second})
	keda := clients(b, a.Addr(), 10)
	api := pb.NewActivityServiceClient(dial(b, a.APIAddr()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := make([]<-chan time.Time, orgs)
	for i := range streams {
		streams[i] = pushed(b, ctx, keda[i%len(keda)], &kedapb.ScaledObjectRef{Namespace: "orgs", Name: fmt.Sprintf("pynode-%d", i),
			ScalerMetadata: map[string]string{"workload": "pynode", "org": fmt.Sprintf("org-%d", i)}})
	}
	const big = 100
	bigStreams := make([]<-chan time.Time, big)
	for i := range bigStreams {
		bigStreams[i] = pushed(b, ctx, keda[i%len(keda)], &kedapb.ScaledObjectRef{Namespace: "orgs", Name: fmt.Sprintf("model-%d", i),
			ScalerMetadata: map[string]string{"workload": "model", "org": "big", "gpusPerReplica": fmt.Sprint(i)}})
	}
	// Every org new, hence active, then dormant after its 1s window.
	time.Sleep(2500 * time.Millisecond) // the 1s window is the point: waiting it out is the setup
	for _, s := range append(streams, bigStreams...) {
		drain(s)
	}
	b.ResetTimer()
	for range b.N {
		var lat, fromSend latencies
		for i := range samples {
			k := (i * 7919) % orgs
			sent := time.Now()
			if _, err := api.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("org-%d", k)}); err != nil {
				b.Fatal(err)
			}
			returned := time.Now()
			select {
			case at := <-streams[k]:
				lat = append(lat, max(0, at.Sub(returned)))
				fromSend = append(fromSend, at.Sub(sent))
			case <-time.After(5 * time.Second):
				b.Fatalf("org-%d: no push within 5s", k)
			}
		}
		b.ReportMetric(ms(lat.quantile(0.5)), "wake-p50-ms")
		b.ReportMetric(ms(lat.quantile(0.99)), "wake-p99-ms")
		b.ReportMetric(ms(fromSend.quantile(0.99)), "wake-from-send-p99-ms")

		if _, err := api.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "big"}); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		var bigLat latencies
		for _, s := range bigStreams {
			select {
			case at := <-s:
				bigLat = append(bigLat, max(0, at.Sub(returned)))
			case <-time.After(5 * time.Second):
				b.Fatal("a workload of the big org got no push within 5s")
			}
		}
		b.ReportMetric(ms(bigLat.quantile(0.5)), "100-workloads-p50-ms")
		b.ReportMetric(ms(bigLat.quantile(1)), "100-workloads-last-ms")
		b.ReportMetric(float64(orgs), "streams")
	}
}
