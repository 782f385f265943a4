package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/orgscaler/orgscaler/app"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// BenchmarkKeepAlive measures what the learned keep-alive costs, side by
// side in one run: IsActive calls a second for 100 models with keepAlive:
// learned (a plan from the org's idle times at every answer) against 100
// plain models; and activity events a second for orgs returning after 3
// hours (each an idle time counted, on disk) against the same orgs again a
// moment later (none counted).
func BenchmarkKeepAlive(b *testing.B) {
	d := size(5*time.Second, 200*time.Millisecond)
	n := size(100_000, 2_000)
	var shift atomic.Int64
	a := startOurs(b, app.Options{MaxOrgs: 10_000_000, Now: func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }})
	cs := clients(b, a.Addr(), 4)
	api := pb.NewActivityServiceClient(dial(b, a.APIAddr()))
	plain, learned := models(nil), models(map[string]string{"keepAlive": "learned", "coldStart": "3m"})
	orgs := orgRequests(n)
	sendOnce(b, api, orgs) // every org known, with a first activity
	b.ResetTimer()
	for range b.N {
		var qps [2]float64
		for i, rs := range [][]*kedapb.ScaledObjectRef{plain, learned} {
			var k atomic.Uint64
			qps[i], _ = closedLoop(b, 64, d, func(ctx context.Context) error {
				j := k.Add(1)
				_, err := cs[j%uint64(len(cs))].IsActive(ctx, rs[j%uint64(len(rs))])
				return err
			})
		}
		b.ReportMetric(qps[0], "plain-IsActive-qps")
		b.ReportMetric(qps[1], "learned-IsActive-qps")
		b.ReportMetric(qps[1]/qps[0], "learned-IsActive-qps-ratio")

		shift.Add(int64(3 * time.Hour))
		start := time.Now()
		sendOnce(b, api, orgs) // each an idle time of 3 h
		returning := float64(n) / time.Since(start).Seconds()
		start = time.Now()
		sendOnce(b, api, orgs) // a moment later: no idle time
		again := float64(n) / time.Since(start).Seconds()
		b.ReportMetric(returning, "returning-events/s")
		b.ReportMetric(again, "steady-events/s")
		b.ReportMetric(returning/again, "returning-events-ratio")
	}
}

// models are 100 models of 100 of the orgs, with extra metadata.
func models(extra map[string]string) []*kedapb.ScaledObjectRef {
	var out []*kedapb.ScaledObjectRef
	for i := range 100 {
		md := map[string]string{"scalerAddress": "orgscaler.keda:9090", "workload": "model", "org": fmt.Sprintf("org-%d", i)}
		for k, v := range extra {
			md[k] = v
		}
		out = append(out, &kedapb.ScaledObjectRef{Namespace: "orgs", Name: fmt.Sprintf("model-org-%d", i), ScalerMetadata: md})
	}
	return out
}
