// Package replay runs keep-alive policies (package keepalive, the code
// the scaler runs) over a day of per-minute org activity, by one exact
// model, so policies compare on the figures other tools report: cold
// activations, the 75th-percentile org's cold share, and GPU-hours.
//
// The model: minute m is active when its count is above zero. A policy
// sees only the minutes before m and says whether the workload is up in
// m. A workload that is down and asked up starts: it is billed from that
// minute and ready ColdStart minutes later. An active minute that finds
// the workload ready is warm; otherwise it is a cold activation (the
// workload starts then if it was down, and stays billed until ready).
// Every active minute is billed.
package replay

import (
	"math"
	"slices"
	"time"

	"github.com/orgscaler/orgscaler/keepalive"
)

// Result is one policy's figures over a trace.
type Result struct {
	Policy          string
	Orgs            int
	ActiveMinutes   int
	ColdActivations int
	BilledMinutes   int
	// orgCold is each org's cold activations over its active minutes, of
	// the orgs with any, ascending.
	orgCold []float64
}

// ColdPct is cold activations as a percentage of active minutes.
func (r Result) ColdPct() float64 {
	if r.ActiveMinutes == 0 {
		return 0
	}
	return 100 * float64(r.ColdActivations) / float64(r.ActiveMinutes)
}

// P75OrgColdPct is the per-org cold percentage at the 75th percentile:
// the fractions sorted ascending, the one at index ⌊0.75·n⌋ (the metric
// of "Serverless in the Wild").
func (r Result) P75OrgColdPct() float64 {
	if len(r.orgCold) == 0 {
		return 0
	}
	return 100 * r.orgCold[int(math.Floor(0.75*float64(len(r.orgCold))))]
}

// GPUHours is the billed minutes in hours: one GPU a workload.
func (r Result) GPUHours() float64 { return float64(r.BilledMinutes) / 60 }

// origin is the instant of minute 0: policies see times, as in the scaler.
var origin = time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC)

// Run replays t through p for workloads that take coldStart minutes to
// become ready. Minutes go in order across all orgs, and what a policy
// that learns from every org (keepalive.Fleet) learns in a minute reaches
// it when the minute is over: at minute m it knows what every org did
// before m, whatever the order of the rows.
func Run(t *Trace, p keepalive.Policy, coldStart int) Result {
	fleet, _ := p.(keepalive.Fleet)
	if fleet != nil {
		p = fleet.Fresh()
		fleet = p.(keepalive.Fleet)
	}
	r := Result{Policy: p.String(), Orgs: len(t.Orgs)}
	orgs := make([]orgRun, len(t.Orgs))
	var learned []learnt
	for m := range Minutes {
		for i := range orgs {
			if idle, ok := orgs[i].minute(&t.Orgs[i], m, p, coldStart); ok && fleet != nil {
				learned = append(learned, learnt{&orgs[i].h, idle})
			}
		}
		for _, l := range learned {
			fleet.Learn(l.h, l.idle)
		}
		learned = learned[:0]
	}
	for _, o := range orgs {
		r.add(o.active, o.cold, o.billed)
	}
	slices.Sort(r.orgCold)
	return r
}

type learnt struct {
	h    *keepalive.History
	idle time.Duration
}

// orgRun is one org's workload as a replay goes.
type orgRun struct {
	h                    keepalive.History
	plan                 keepalive.Plan
	last                 int  // the last active minute, once seen
	seen                 bool // any active minute yet
	up                   bool
	start                int // up since: ready from start + cold start
	active, cold, billed int
}

// minute plays minute m of org, and returns the idle time it ended, if
// any.
func (o *orgRun) minute(org *Org, m int, p keepalive.Policy, c int) (time.Duration, bool) {
	want := o.seen && o.plan.Up(time.Duration(m-o.last)*time.Minute)
	switch {
	case org.Active[m]:
		o.active++
		if !o.up || m-o.start < c {
			o.cold++
			if !o.up {
				o.up, o.start = true, m
			}
		}
		o.billed++
		idle, ok := o.h.Observe(origin.Add(time.Duration(m) * time.Minute))
		o.plan = p.Plan(&o.h, time.Duration(c)*time.Minute)
		o.last, o.seen = m, true
		return idle, ok
	case want || (o.up && m-o.start < c): // asked up, or still starting
		if !o.up {
			o.up, o.start = true, m
		}
		o.billed++
	default:
		o.up = false
	}
	return 0, false
}

func (r *Result) add(active, cold, billed int) {
	r.ActiveMinutes += active
	r.ColdActivations += cold
	r.BilledMinutes += billed
	if active > 0 {
		r.orgCold = append(r.orgCold, float64(cold)/float64(active))
	}
}

// Limit is what knowing every arrival in advance would cost: no cold
// activation, since each org's workload is loaded just in time before its
// first arrival, and each idle gap is billed up to a cold start (shorter
// gaps are kept up, longer ones loaded again just in time).
func Limit(t *Trace, coldStart int) Result {
	r := Result{Policy: "limit", Orgs: len(t.Orgs)}
	for i := range t.Orgs {
		active, billed, last := 0, 0, -1
		for m, on := range t.Orgs[i].Active {
			if !on {
				continue
			}
			active++
			billed++
			if last < 0 {
				billed += coldStart
			} else {
				billed += min(m-last-1, coldStart)
			}
			last = m
		}
		r.add(active, 0, billed)
	}
	slices.Sort(r.orgCold)
	return r
}
