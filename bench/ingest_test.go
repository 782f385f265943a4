package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/app"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// scrapeValue reads one unlabelled sample from the app's /metrics.
func scrapeValue(b *testing.B, a *app.App, name string) float64 {
	resp, err := http.Get("http://" + a.MetricsAddr() + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		b.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// streamActivity sends orgs round and round on conc client streams of
// batch events each, until ctx ends, and counts the events acknowledged.
func streamActivity(ctx context.Context, api pb.ActivityServiceClient, orgs []*pb.StreamActivityRequest, conc, batch int, events *atomic.Int64) {
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			for i := g * 7919; ctx.Err() == nil; {
				s, err := api.StreamActivity(ctx)
				if err != nil {
					return
				}
				for range batch {
					if s.Send(orgs[i%len(orgs)]) != nil {
						return
					}
					i += 13
				}
				if _, err := s.CloseAndRecv(); err != nil {
					return
				}
				events.Add(int64(batch))
			}
		})
	}
	wg.Wait()
}

// sendOnce sends every org once, on streams of 10,000.
func sendOnce(b *testing.B, api pb.ActivityServiceClient, orgs []*pb.StreamActivityRequest) {
	for i := 0; i < len(orgs); i += 10_000 {
		s, err := api.StreamActivity(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range orgs[i:min(len(orgs), i+10_000)] {
			if err := s.Send(r); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.CloseAndRecv(); err != nil {
			b.Fatal(err)
		}
	}
}

func orgRequests(n int) []*pb.StreamActivityRequest {
	reqs := make([]*pb.StreamActivityRequest, n)
	for i := range reqs {
		reqs[i] = &pb.StreamActivityRequest{Org: fmt.Sprintf("org-%d", i)}
	}
	return reqs
}

// BenchmarkIngest sends activity for 100k distinct orgs through the
// client-streaming RPC as fast as it goes, and reports the events taken a
// second and the Badger writes a second after coalescing (flush every 1s).
func BenchmarkIngest(b *testing.B) {
	n := size(100_000, 2_000)
	d := size(8*time.Second, 300*time.Millisecond)
	a := startOurs(b, app.Options{FlushInterval: time.Second})
	api := pb.NewActivityServiceClient(dial(b, a.APIAddr()))
	orgs := orgRequests(n)
	// Every org known first: new orgs are written at once, which is not
	// the steady state being measured.
	sendOnce(b, api, orgs)
	b.ResetTimer()
	for range b.N {
		writes0 := scrapeValue(b, a, "orgscaler_badger_org_writes_total")
		var events atomic.Int64
		ctx, cancel := context.WithTimeout(context.Background(), d)
		start := time.Now()
		streamActivity(ctx, api, orgs, 4, 2_000, &events)
		took := time.Since(start)
		cancel()
		writes := scrapeValue(b, a, "orgscaler_badger_org_writes_total") - writes0
		b.ReportMetric(float64(events.Load())/took.Seconds(), "events/s")
		b.ReportMetric(writes/took.Seconds(), "badger-writes/s")
	}
}
