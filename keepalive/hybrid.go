package keepalive

import (
	"fmt"
	"math"
	"time"
)

// Hybrid is the hybrid histogram policy of "Serverless in the Wild": when
// an org's idle times are well known, its workload is let go right after
// activity and brought back (pre-warmed, the cold start ahead) at the 5th
// percentile of its idle times less 10%, and kept up to the 99th
// percentile plus 10%; while they are not (too few, spread flat over the
// range, or mostly beyond it), a 4 h keep-alive. Azure Functions runs this
// policy in production; here it is an anchor to compare against.
type Hybrid struct{}

// The hybrid's settings, as the paper gives them.
const (
	hybridHead       = 0.05
	hybridTail       = 0.99
	hybridMargin     = 0.10
	hybridMinCV      = 2   // below it the histogram is too flat to predict anything
	hybridMinSamples = 2   // idle times in range before the histogram is trusted
	hybridMaxOver    = 0.5 // most the idle times may be beyond the range
)

func (Hybrid) String() string { return "hybrid" }

// Plan pre-warms and keeps alive by the histogram when it is
// representative, and keeps alive for the whole range otherwise.
func (Hybrid) Plan(h *History, coldStart time.Duration) Plan {
	n, over := h.inRange(), uint64(h.Over)
	switch {
	case n < hybridMinSamples:
		return Plan{KeepFor: Range, Why: fmt.Sprintf("%d idle times known (fewer than %d): a %s keep-alive", n, hybridMinSamples, duration(Range))}
	case float64(over) > hybridMaxOver*float64(n+over):
		return Plan{KeepFor: Range, Why: fmt.Sprintf("%d of %d idle times longer than %s: a %s keep-alive", over, n+over, duration(Range), duration(Range))}
	case h.cv() < hybridMinCV:
		return Plan{KeepFor: Range, Why: fmt.Sprintf("idle times spread evenly (CV %.1f < %d): a %s keep-alive", h.cv(), hybridMinCV, duration(Range))}
	}
	headBin := int(math.Floor(float64(h.percentile(hybridHead)) * (1 - hybridMargin)))
	tailBin := int(math.Ceil(float64(h.percentile(hybridTail)) * (1 + hybridMargin)))
	head, tail := time.Duration(headBin)*Bin, binEnd(tailBin)
	why := fmt.Sprintf("idle times from %s (5th percentile, less 10%%) to %s (99th, plus 10%%)", duration(head), duration(time.Duration(tailBin)*Bin))
	if head-coldStart <= 0 {
		return Plan{KeepFor: tail, Why: why + ": kept up throughout"}
	}
	return Plan{PrewarmFrom: head - coldStart, PrewarmUntil: tail, Why: why + fmt.Sprintf(": let go, back %s before the 5th percentile", duration(coldStart))}
}

func (h *History) inRange() uint64 {
	var n uint64
	for _, b := range h.Bins {
		n += uint64(b)
	}
	return n
}

// cv is the coefficient of variation of the bin counts: high when idle
// times cluster, zero when they spread evenly.
func (h *History) cv() float64 {
	n := float64(h.inRange())
	mean := n / float64(len(h.Bins))
	if mean == 0 {
		return 0
	}
	var sq float64
	for _, b := range h.Bins {
		sq += (float64(b) - mean) * (float64(b) - mean)
	}
	return math.Sqrt(sq/float64(len(h.Bins))) / mean
}

// percentile is the first bin (in Bins) by which a fraction p of the idle
// times in range has been seen.
func (h *History) percentile(p float64) int {
	target := p * float64(h.inRange())
	var cum float64
	for i, b := range h.Bins {
		cum += float64(b)
		if cum >= target {
			return i
		}
	}
	return len(h.Bins) - 1
}
