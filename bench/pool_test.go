package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"golang.org/x/sync/errgroup"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/pool"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// BenchmarkPools measures GPU pools, side by side in one run: one turn of
// 100 pools of 100 members each (10,000 members, demands moving every
// turn), as the pools' loop makes it each second from the gathered
// members; and IsActive calls a second for 100 pooled models against 100
// plain ones (the answer only reads its seat).
func BenchmarkPools(b *testing.B) {
	d := size(6*time.Second, 200*time.Millisecond)
	turns := size(60, 3)
	const rounds = 3
	loop, t0 := benchLoop()
	a := startOurs(b, app.Options{})
	cs := clients(b, a.Addr(), 4)
	admin := pb.NewAdminServiceClient(dial(b, a.APIAddr()))
	if _, err := admin.SetPool(context.Background(), &pb.SetPoolRequest{Pool: "bench", Gpus: ptr(int64(1000))}); err != nil {
		b.Fatal(err)
	}
	plain, pooled := models(nil), models(map[string]string{"pool": "bench"})
	// Seated once, as after KEDA's first poll: each first answer waits
	// for the pool's next turn, so they are asked together.
	var seated errgroup.Group
	for _, r := range pooled {
		seated.Go(func() error { _, err := cs[0].IsActive(context.Background(), r); return err })
	}
	if err := seated.Wait(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		loop.Turn(t0) // the first turn seats everyone
		start := time.Now()
		for i := 1; i <= turns; i++ {
			loop.Turn(t0.Add(time.Duration(i) * time.Second))
		}
		b.ReportMetric(ms(time.Since(start)/time.Duration(turns)), "turn-10k-members-ms")
		// Alternated, so neither side has the machine's quieter moment.
		var qps [2]float64
		for range rounds {
			for i, rs := range [][]*kedapb.ScaledObjectRef{plain, pooled} {
				var k atomic.Uint64
				q, _ := closedLoop(b, 64, d/rounds, func(ctx context.Context) error {
					j := k.Add(1)
					_, err := cs[j%uint64(len(cs))].IsActive(ctx, rs[j%uint64(len(rs))])
					return err
				})
				qps[i] += q / rounds
			}
		}
		b.ReportMetric(qps[0], "plain-IsActive-qps")
		b.ReportMetric(qps[1], "pooled-IsActive-qps")
		b.ReportMetric(qps[1]/qps[0], "pooled-IsActive-qps-ratio")
	}
}

// benchLoop is a loop over 100 pools of 100 members each, in 37 orgs of
// three weights, 1 or 2 GPUs a replica, half with backlog, whose demands
// move at every turn; each pool holds about a third of what they ask,
// and paces wakes.
func benchLoop() (*pool.Loop, time.Time) {
	var configs []pool.Config
	byName := map[string]pool.Config{}
	for p := range 100 {
		c := pool.Config{Name: fmt.Sprintf("pool-%d", p), GPUs: 100, WakeCount: 10, WakePer: 30 * time.Second, Stabilization: time.Minute}
		configs = append(configs, c)
		byName[c.Name] = c
	}
	// Six gatherings, made beforehand (the turn is measured, not making
	// them), so every member's demand moves at every turn.
	sets := make([]map[string][]pool.Want, 6)
	for i := range sets {
		sets[i] = make(map[string][]pool.Want, len(configs))
		for p, c := range configs {
			ws := make([]pool.Want, 0, 100)
			for m := range 100 {
				ws = append(ws, pool.Want{Member: pool.Member{ID: fmt.Sprintf("ns/so-%d-%d/metric", p, m), Org: fmt.Sprintf("org-%d", m%37),
					Weight: 1 + int64(m%3), GPUs: 1 + int64(m%2), Demand: int64(m+i) % 6}, Backlog: m%2 == 0})
			}
			sets[i][c.Name] = ws
		}
	}
	var turn atomic.Int64
	wants := func(time.Time) map[string][]pool.Want { return sets[turn.Add(1)%int64(len(sets))] }
	t0 := time.Unix(1_800_000_000, 0)
	return pool.NewLoop(pool.LoopOptions{
		Configs: func() []pool.Config { return configs },
		Lookup:  func(name string) (pool.Config, bool) { c, ok := byName[name]; return c, ok },
		Wants:   wants,
		Now:     func() time.Time { return t0 },
	}), t0
}

func ptr[T any](v T) *T { return &v }
