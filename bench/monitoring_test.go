package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/pubsubdepth"
)

// BenchmarkMonitoringCalls fetches the backlog of 5,000 subscriptions in 3
// projects from a Cloud Monitoring MetricService served here, and counts
// the ListTimeSeries queries and pages one refresh costs. Pages hold up to
// 100,000 series, as Cloud Monitoring's do, and, in a second run, 1,000.
func BenchmarkMonitoringCalls(b *testing.B) {
	n := size(5_000, 300)
	for _, page := range []int{100_000, 1_000} {
		srv := monitoringtest.Start(b)
		srv.PageSize = page
		var subs []string
		now := time.Now()
		for i := range n {
			sub := fmt.Sprintf("projects/proj-%c/subscriptions/jobs-%05d", 'a'+i%3, i)
			srv.Set(sub, int64(i%11), now)
			subs = append(subs, sub)
		}
		mon, err := pubsubdepth.NewMonitoring(context.Background(), pubsubdepth.MonitoringOptions{
			Endpoint: srv.Addr, Insecure: true, Lookback: 5 * time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = mon.Close() })
		for range b.N {
			before := len(srv.Requests())
			start := time.Now()
			points, err := mon.Fetch(context.Background(), subs)
			if err != nil {
				b.Fatal(err)
			}
			took := time.Since(start)
			if len(points) != n {
				b.Fatalf("%d of %d subscriptions have a point", len(points), n)
			}
			reqs := srv.Requests()[before:]
			queries := 0
			for _, r := range reqs {
				if r.GetPageToken() == "" {
					queries++
				}
			}
			b.ReportMetric(float64(queries), fmt.Sprintf("queries@page%d", page))
			b.ReportMetric(float64(len(reqs)), fmt.Sprintf("calls@page%d", page))
			b.ReportMetric(ms(took), fmt.Sprintf("refresh-ms@page%d", page))
		}
	}
	b.ReportMetric(float64(n), "subscriptions")
}
