package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/orgscaler/orgscaler/kubeevents"
	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/pools"
)

// newPoolLoop turns the pools defs holds, with the members wants gathers;
// events, when set, records what changes.
func newPoolLoop(defs *pools.Store, wants func(time.Time) map[string][]pool.Want, now func() time.Time, events *kubeevents.Recorder) *pool.Loop {
	var observer pool.Observer
	if events != nil {
		observer = poolEvents{events}
	}
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
		Wants:    wants,
		Now:      now,
		Observer: observer,
	})
}

// poolEvents records a pool's changes as Events on its members'
// ScaledObjects.
type poolEvents struct{ r *kubeevents.Recorder }

func (e poolEvents) Seated(st pool.State, s pool.Seat, capped bool) {
	object, _ := pool.SplitID(s.ID)
	ns, name, _ := strings.Cut(object, "/")
	if !capped {
		note := fmt.Sprintf("pool %s grants the %d replica(s) it wants", st.Name, s.Demand)
		if s.Demand == 0 {
			note = fmt.Sprintf("no longer asks pool %s for replicas", st.Name)
		}
		e.r.Pool(ns, name, false, kubeevents.ReasonPoolRecovered, note)
		return
	}
	note := fmt.Sprintf("pool %s grants %d of the %d replica(s) it wants: its %d GPUs are shared by org weight, and its members ask %d",
		st.Name, s.Share, s.Demand, st.GPUs, st.Demanded)
	if s.Queued > 0 {
		note = fmt.Sprintf("queued to wake in pool %s (#%d of %d): %s", st.Name, s.Queued, len(st.Queue), note)
	}
	e.r.Pool(ns, name, true, kubeevents.ReasonPoolCapped, note)
}

func (e poolEvents) Overcommitted(st pool.State, over bool) {
	var minimums int64
	for _, s := range st.Seats() {
		minimums += max(s.Min, 0) * max(s.GPUs, 0)
	}
	note := fmt.Sprintf("pool %s: its members' minReplicaCounts alone need %d GPUs of its %d; each gets its minimum", st.Name, minimums, st.GPUs)
	if !over {
		note = fmt.Sprintf("pool %s: its members' minimums fit in its %d GPUs again", st.Name, st.GPUs)
	}
	seen := map[string]bool{}
	for _, s := range st.Seats() {
		object, _ := pool.SplitID(s.ID)
		if !seen[object] {
			seen[object] = true
			ns, name, _ := strings.Cut(object, "/")
			e.r.Pool(ns, name, over, kubeevents.ReasonPoolOvercommitted, note)
		}
	}
}

func poolConfig(p pools.Pool) pool.Config {
	return pool.Config{Name: p.Name, GPUs: p.GPUs, WakeCount: p.WakeCount, WakePer: p.WakePer, Stabilization: p.Stabilization, Set: p.At.Time()}
}
