// Package keepalive is the policy that says, from an org's history of
// activity, how long its workloads stay warm after the last activity and
// when they are brought back before the next: a fixed window, the hybrid
// histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC
// 2020), or the learned one (the plan of least expected cost, per org).
// `scalerctl replay` runs these very policies over a trace, so what a
// replay shows is what the scaler would do.
package keepalive

import (
	"fmt"
	"strings"
	"time"
)

// Bin is the width of one bin of an org's idle-time histogram, and Range
// the longest idle time it holds; longer ones are only counted. MinIdle is
// the shortest idle time recorded: activity closer together is one busy
// stretch (in a per-minute trace, two active minutes in a row).
const (
	Bin     = time.Minute
	Range   = 4 * time.Hour
	MinIdle = 2 * Bin
	bins    = int(Range/Bin) + 1 // 0 .. Range, whole bins
)

// binEnd is the last instant of bin k: a plan that covers the idle times
// of bin k covers all of them, however far into the bin they fall.
func binEnd(k int) time.Duration { return time.Duration(k+1)*Bin - 1 }

// History is what a policy knows of an org: its last activity and a
// fixed-size histogram of its idle times (the time from one activity to
// the next, when at least a Bin), so it stays small however long the org
// lives.
type History struct {
	Last time.Time
	Bins [bins]uint32
	Over uint32 // idle times longer than Range
}

// Observe records activity at at: the idle time since the last, if any
// and at least MinIdle, goes into the histogram, and is returned with
// true. Activity before the last changes nothing.
func (h *History) Observe(at time.Time) (time.Duration, bool) {
	last := h.Last
	if !at.After(last) {
		return 0, false
	}
	h.Last = at
	if last.IsZero() {
		return 0, false
	}
	idle := at.Sub(last)
	return idle, h.Add(idle)
}

// Add records one idle time, if at least MinIdle, and says whether it did.
func (h *History) Add(idle time.Duration) bool {
	if idle < MinIdle {
		return false
	}
	h.record(idle)
	return true
}

// Known is how many idle times h holds, in range or beyond it.
func (h *History) Known() uint64 { return h.inRange() + uint64(h.Over) }

// record counts one idle time of at least a Bin.
func (h *History) record(idle time.Duration) {
	if idle > Range {
		h.Over = saturating(h.Over)
		return
	}
	i := int(idle / Bin)
	h.Bins[i] = saturating(h.Bins[i])
}

func saturating(n uint32) uint32 {
	if n == ^uint32(0) {
		return n
	}
	return n + 1
}

// Plan is what a policy says once an org was last active: its workloads
// stay up while the time since that activity is at most KeepFor, come up
// again from PrewarmFrom to PrewarmUntil (when PrewarmFrom > 0: a
// pre-warm, already counting the cold start), and are down otherwise.
type Plan struct {
	KeepFor                   time.Duration
	PrewarmFrom, PrewarmUntil time.Duration
	Why                       string
}

// Up says whether the workload is up since after the last activity.
func (p Plan) Up(since time.Duration) bool {
	if since <= p.KeepFor {
		return true
	}
	return p.PrewarmFrom > 0 && since >= p.PrewarmFrom && since <= p.PrewarmUntil
}

// Policy plans an org's keep-alive and pre-warm from its history, for a
// workload that takes coldStart to become ready.
type Policy interface {
	Plan(h *History, coldStart time.Duration) Plan
	String() string
}

// Fleet is a policy that also learns from every org: it is told each idle
// time any org shows (just recorded in h), as it happens. Fresh is the
// same policy knowing nothing yet, for a run of its own.
type Fleet interface {
	Learn(h *History, idle time.Duration)
	Fresh() Policy
}

// Fixed keeps a workload up for a fixed window after the last activity,
// and never pre-warms: the scaler's --idle-window.
type Fixed time.Duration

// Plan keeps it up for the window.
func (f Fixed) Plan(*History, time.Duration) Plan {
	return Plan{KeepFor: time.Duration(f), Why: fmt.Sprintf("a fixed window of %s", duration(time.Duration(f)))}
}

func (f Fixed) String() string { return "fixed:" + duration(time.Duration(f)) }

// duration writes d as people do: 10m, 1h, 4h30m, 1d.
func duration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Parse reads a policy as --policy names it: fixed:DURATION (fixed:10m,
// fixed:1h, fixed:1d), hybrid, or learned[:PRICE] (learned:30m). A learned
// policy gets a fleet histogram of its own.
func Parse(s string) (Policy, error) { return ParseWithFleet(s, &History{}) }

// ParseWithFleet is Parse, with fleet as a learned policy's fleet
// histogram: the live scaler's, summed over every org and replica.
func ParseWithFleet(s string, fleet *History) (Policy, error) {
	name, arg, _ := strings.Cut(strings.TrimSpace(s), ":")
	switch name {
	case "learned":
		price := DefaultPrice
		if arg != "" {
			d, err := parseDuration(arg)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("policy %q: expected learned or learned:PRICE, a cold start's price in GPU-time above zero, such as learned:30m", s)
			}
			price = d
		}
		return Learned{Price: price, Fleet: fleet}, nil
	case "fixed":
		d, err := parseDuration(arg)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("policy %q: expected fixed:DURATION with a window above zero, such as fixed:10m, fixed:4h or fixed:1d", s)
		}
		return Fixed(d), nil
	case "hybrid":
		if arg != "" {
			return nil, fmt.Errorf("policy %q: hybrid takes no setting", s)
		}
		return Hybrid{}, nil
	}
	return nil, fmt.Errorf("policy %q: expected fixed:DURATION, hybrid or learned[:PRICE]", s)
}

func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || fmt.Sprint(days) != n {
			return 0, fmt.Errorf("%q is not a whole number of days", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
