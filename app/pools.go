package app

import (
	"time"

	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/pools"
)

// newPoolLoop turns the pools defs holds, with the members wants gathers.
func newPoolLoop(defs *pools.Store, wants func(time.Time) map[string][]pool.Want, now func() time.Time) *pool.Loop {
	return pool.NewLoop(pool.LoopOptions{
		Configs: func() []pool.Config {
			list := defs.List()
			out := make([]pool.Config, len(list))
			for i, p := range list {
				out[i] = poolConfig(p)
			}
			return out
		},
		Lookup: func(name string) (pool.Config, bool) {
			p, ok := defs.Get(name)
			return poolConfig(p), ok
		},
		Wants: wants,
		Now:   now,
	})
}

func poolConfig(p pools.Pool) pool.Config {
	return pool.Config{Name: p.Name, GPUs: p.GPUs, WakeCount: p.WakeCount, WakePer: p.WakePer, Stabilization: p.Stabilization}
}
