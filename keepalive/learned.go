package keepalive

import (
	"fmt"
	"time"
)

// Learned is the scaler's own policy: for each org, the keep-alive, and
// the pre-warm window if any, that make the next idle gap cheapest in
// expectation, by the org's idle times blended with the fleet's (so a new
// org starts from what orgs in general do, and then from its own). A gap's
// cost is the GPU-time billed while waiting plus Price for a cold start:
// Price is the single knob, what a cold start is worth in GPU-time.
type Learned struct {
	Price time.Duration
	// Fleet holds every org's idle times (Learn adds them); nil: none.
	Fleet *History
}

// DefaultPrice is the learned policy's default cold-start price: on the
// Azure Functions 2019 day of docs/POLICY.md, at a 3-minute cold start,
// a price at which it bills fewer GPU-hours than a fixed 1 h window, with
// fewer cold starts.
const DefaultPrice = 35 * time.Minute

// The learned policy's fixed settings: how many of an org's own idle
// times the fleet's histogram counts as; how many idle times of each org
// the fleet learns from (its young ones); how much more a cold start
// weighs on an org with no history than on a busy one (1 + youngBoost/n
// times the price, n its activations known); and the windows, as
// quantiles of the idle times after the keep-alive, a pre-warm may cover.
const (
	priorWeight  = 1
	youngSamples = 16
	youngBoost   = 16
)

var prewarmWindows = [][2]float64{{0.01, 0.99}, {0.05, 0.95}, {0.05, 0.99}, {0.1, 0.9}, {0.25, 0.75}}

func (l Learned) String() string {
	if l.Price == DefaultPrice {
		return "learned"
	}
	return "learned:" + duration(l.Price)
}

// Learn adds an org's idle time (just recorded in h) to the fleet's
// histogram while the org is young: the fleet stands for what a new org's
// next gap is like, so each org counts its first few, not its thousands.
func (l Learned) Learn(h *History, idle time.Duration) {
	if l.Fleet != nil && h.Known() <= youngSamples {
		l.Fleet.record(idle)
	}
}

// Fresh is l with an empty fleet histogram. The histogram is not safe
// for concurrent use: one run, or one goroutine, at a time.
func (l Learned) Fresh() Policy { return Learned{Price: l.Price, Fleet: &History{}} }

// dist is an idle-time distribution over whole bins 1..bins-1 and beyond.
type dist struct {
	p    [bins]float64
	over float64
}

// blend is h's idle times with the fleet's counted as priorWeight of them;
// false when neither knows any.
func (l Learned) blend(h *History) (dist, bool) {
	var d dist
	own := float64(h.Known())
	total := own
	if l.Fleet != nil {
		if n := float64(l.Fleet.Known()); n > 0 {
			w := priorWeight / n
			for i, b := range l.Fleet.Bins {
				d.p[i] = w * float64(b)
			}
			d.over = w * float64(l.Fleet.Over)
			total += priorWeight
		}
	}
	if total == 0 {
		return d, false
	}
	for i, b := range h.Bins {
		d.p[i] = (d.p[i] + float64(b)) / total
	}
	d.over = (d.over + float64(h.Over)) / total
	return d, true
}

// Plan picks, among keeping up for K and then (optionally) coming back for
// a window, the plan of least expected cost for the next idle gap.
func (l Learned) Plan(h *History, coldStart time.Duration) Plan {
	d, ok := l.blend(h)
	if !ok {
		// Nothing known anywhere: keep up for one cold start's price, the
		// rule that never costs more than twice the best in hindsight.
		return Plan{KeepFor: l.Price, Why: "no idle times known yet: kept up for a cold start's price, " + duration(l.Price)}
	}
	price := float64(l.Price) / float64(Bin)
	// A cold start weighs more on an org that shows little activity: it is
	// a larger share of what its users see (the per-org cold share).
	price *= 1 + youngBoost/float64(h.Known()+1)
	c := float64(coldStart) / float64(Bin)
	k, best := d.bestKeep(price)
	plan := Plan{KeepFor: keepFor(k)}
	for _, q := range prewarmWindows {
		for _, keep := range []int{0, k} {
			lo, hi := d.quantileAfter(keep, q[0]), d.quantileAfter(keep, q[1])
			s := lo - int(c+0.5)
			if lo < 0 || s <= keep+1 || hi < lo {
				continue
			}
			if cost := d.prewarmCost(keep, s, hi, c, price); cost < best {
				best = cost
				plan = Plan{KeepFor: keepFor(keep), PrewarmFrom: time.Duration(s) * Bin, PrewarmUntil: binEnd(hi)}
			}
		}
	}
	plan.Why = fmt.Sprintf("the cheapest plan for the next idle gap at a cold start's price of %s (an expected %.0f minutes of GPU-time and priced cold starts)", duration(l.Price), best)
	return plan
}

// keepFor is a keep-alive through bin k (none for 0: only the activity).
func keepFor(k int) time.Duration {
	if k == 0 {
		return 0
	}
	return binEnd(k)
}

// bestKeep is the keep-alive k (in bins) of least expected cost, and that
// cost: the time kept up until the next activity or k, and the price if
// the activity comes later.
func (d *dist) bestKeep(price float64) (int, float64) {
	later := d.over
	for x := 1; x < bins; x++ {
		later += d.p[x]
	}
	bestK, best := 0, later*price
	var waited float64 // the expected time kept up for activity within k
	for k := 1; k < bins; k++ {
		waited += d.p[k] * float64(k)
		later -= d.p[k]
		if cost := waited + later*(float64(k)+price); cost < best {
			bestK, best = k, cost
		}
	}
	return bestK, best
}

// prewarmCost is the cost of keeping up for k bins, with the workload brought back at s (ready
// c later) and kept to u: activity before it is ready, or after u, is
// cold.
func (d *dist) prewarmCost(k, s, u int, c, price float64) float64 {
	var cost float64
	for x := 1; x < bins; x++ {
		switch {
		case x <= k:
			cost += d.p[x] * float64(x)
		case x < s:
			cost += d.p[x] * (float64(k) + price)
		case float64(x) < float64(s)+c:
			cost += d.p[x] * (float64(k) + float64(x-s) + price)
		case x <= u:
			cost += d.p[x] * (float64(k) + float64(x-s))
		default:
			cost += d.p[x] * (float64(k) + float64(u-s+1) + price)
		}
	}
	return cost + d.over*(float64(k)+float64(u-s+1)+price)
}

// quantileAfter is the bin by which a fraction q of the idle times longer
// than k bins has been seen; -1 when none are (in range).
func (d *dist) quantileAfter(k int, q float64) int {
	var mass float64
	for x := k + 1; x < bins; x++ {
		mass += d.p[x]
	}
	if mass == 0 {
		return -1
	}
	var cum float64
	for x := k + 1; x < bins; x++ {
		cum += d.p[x]
		if cum >= q*mass {
			return x
		}
	}
	return bins - 1
}
