package keepalive

import (
	"slices"
	"time"
)

// Floor is p keeping a workload up at least minWarm after the activity and
// after a pre-warm begins: a GPU that has just finished provisioning is
// not torn down by a plan that would let it go sooner. A plan already
// longer is unchanged.
func (p Plan) Floor(minWarm time.Duration) Plan {
	p.KeepFor = max(p.KeepFor, minWarm)
	if p.PrewarmFrom > 0 {
		p.PrewarmUntil = max(p.PrewarmUntil, p.PrewarmFrom+minWarm)
	}
	return p
}

// Next is the first time since the activity, after since, at which Up
// changes; false when it never does again.
func (p Plan) Next(since time.Duration) (time.Duration, bool) {
	for _, edge := range p.edges() {
		if edge > since && p.Up(edge) != p.Up(since) {
			return edge, true
		}
	}
	return 0, false
}

// edges are the instants, in order, at which Up may change: just past the
// keep-alive, the pre-warm's start, and just past its end.
func (p Plan) edges() []time.Duration {
	e := []time.Duration{p.KeepFor + 1}
	if p.PrewarmFrom > 0 {
		e = append(e, p.PrewarmFrom, p.PrewarmUntil+1)
	}
	slices.Sort(e)
	return e
}

// Prewarm is when, after since, the plan next brings the workload back up
// from down: the pre-warm's start; false when no pre-warm is ahead.
func (p Plan) Prewarm(since time.Duration) (time.Duration, bool) {
	if p.PrewarmFrom > since && p.PrewarmFrom > p.KeepFor {
		return p.PrewarmFrom, true
	}
	return 0, false
}
