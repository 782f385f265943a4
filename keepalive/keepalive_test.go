package keepalive

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// Idle times go into whole-minute bins; activity less than MinIdle after
// the last only moves it; longer than the range is only counted.
func TestHistoryObserve(t *testing.T) {
	var h History
	h.Observe(t0)
	h.Observe(t0.Add(30 * time.Second))
	h.Observe(t0.Add(2 * time.Minute)) // 90 s later: still one busy stretch
	h.Observe(t0.Add(30 * time.Second))
	h.Observe(t0.Add(2*time.Minute + 5*time.Minute + 59*time.Second))
	h.Observe(t0.Add(10 * time.Hour))
	h.Observe(t0) // before the last: nothing
	if h.Bins[5] != 1 || h.inRange() != 1 || h.Over != 1 || !h.Last.Equal(t0.Add(10*time.Hour)) {
		t.Fatalf("bins[5]=%d in range %d over %d last %s; want one 5-minute idle time, one beyond the range", h.Bins[5], h.inRange(), h.Over, h.Last)
	}
}

func TestHybridPlans(t *testing.T) {
	var h History
	at := t0
	for range 2 { // first visit, then one idle time of 40 minutes
		h.Observe(at)
		at = at.Add(40 * time.Minute)
	}
	if p := (Hybrid{}).Plan(&h, 3*time.Minute); p.KeepFor != Range || p.PrewarmFrom != 0 {
		t.Fatalf("one idle time: %+v; want the 4 h keep-alive", p)
	}
	h.Observe(at)
	p := (Hybrid{}).Plan(&h, 3*time.Minute)
	// 40 m less 10% is 36 m, less the 3 m cold start: back at 33 m, up
	// through the 44th minute (40 m plus 10%), however far into it.
	if p.KeepFor != 0 || p.PrewarmFrom != 33*time.Minute || p.PrewarmUntil != 45*time.Minute-1 {
		t.Fatalf("two idle times of 40 m: %+v; want down, then up from 33m to the end of the 44th minute", p)
	}
	if p.Up(10*time.Minute) || !p.Up(33*time.Minute) || !p.Up(44*time.Minute+50*time.Second) || p.Up(45*time.Minute) || !p.Up(0) {
		t.Fatalf("Up does not follow %+v", p)
	}
	if !strings.Contains(p.Why, "let go, back 3m before the 5th percentile") {
		t.Fatalf("why: %q", p.Why)
	}
	var flat History
	flat.Observe(t0)
	for i := 1; i <= bins; i++ { // one idle time in every bin: nothing to predict
		flat.Observe(flat.Last.Add(time.Duration(i-1)*Bin + Bin))
	}
	if p := (Hybrid{}).Plan(&flat, 3*time.Minute); p.KeepFor != Range || !strings.Contains(p.Why, "spread evenly") {
		t.Fatalf("a flat histogram: %+v; want the 4 h keep-alive", p)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]string{"fixed:10m": "fixed:10m", "fixed:1h": "fixed:1h", "fixed:4h30m": "fixed:4h30m", "fixed:1d": "fixed:1d", "fixed:24h": "fixed:1d", "hybrid": "hybrid"} {
		p, err := Parse(in)
		if err != nil || p.String() != want {
			t.Errorf("Parse(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for in, want := range map[string]string{
		"fixed:0s": "expected fixed:DURATION with a window above zero", "fixed:soon": "expected fixed:DURATION",
		"hybrid:2": "hybrid takes no setting", "azure": `policy "azure": expected fixed:DURATION, hybrid or learned[:PRICE]`,
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): want %q, got %v", in, want, err)
		}
	}
}

// A periodic org, once its idle times are known, is let go after each
// visit and brought back, the cold start ahead, before the next; an org
// with one idle time and a high price is kept up through the time it was.
func TestLearnedPlans(t *testing.T) {
	p := Learned{Price: DefaultPrice, Fleet: &History{}}
	var h History
	at := t0
	for range 10 {
		if idle, ok := h.Observe(at); ok {
			p.Learn(&h, idle)
		}
		at = at.Add(45 * time.Minute)
	}
	plan := p.Plan(&h, 3*time.Minute)
	if plan.Up(20*time.Minute) || !plan.Up(42*time.Minute) || !plan.Up(45*time.Minute) {
		t.Fatalf("every 45 minutes: %+v; want down after the visit, up from before 42m through 45m", plan)
	}
	var sparse History
	sparse.Observe(t0)
	sparse.Observe(t0.Add(90 * time.Minute))
	if plan := (Learned{Price: 4 * time.Hour}).Plan(&sparse, 3*time.Minute); !plan.Up(89 * time.Minute) {
		t.Fatalf("one idle time of 90 m at a price of 4 h: %+v; want up through 90m", plan)
	}
	if plan := (Learned{Price: time.Hour}).Plan(&History{}, 3*time.Minute); plan.KeepFor != time.Hour {
		t.Fatalf("nothing known: %+v; want kept up for the price", plan)
	}
}

// A floor keeps the workload up minWarm after activity and after a
// pre-warm begins; Next and Prewarm find the edges of the floored plan.
func TestFloorAndEdges(t *testing.T) {
	p := Plan{KeepFor: 0, PrewarmFrom: 30 * time.Minute, PrewarmUntil: 32 * time.Minute}.Floor(6 * time.Minute)
	if p.KeepFor != 6*time.Minute || p.PrewarmUntil != 36*time.Minute {
		t.Fatalf("floored: %+v; want up 6m after activity and 6m after the pre-warm starts", p)
	}
	for _, c := range []struct {
		since, next time.Duration
		ok          bool
	}{
		{0, 6*time.Minute + 1, true},
		{10 * time.Minute, 30 * time.Minute, true},
		{31 * time.Minute, 36*time.Minute + 1, true},
		{40 * time.Minute, 0, false},
	} {
		if next, ok := p.Next(c.since); next != c.next || ok != c.ok {
			t.Errorf("Next(%s) = %s %v; want %s %v", c.since, next, ok, c.next, c.ok)
		}
	}
	if at, ok := p.Prewarm(10 * time.Minute); !ok || at != 30*time.Minute {
		t.Errorf("Prewarm(10m) = %s %v; want 30m", at, ok)
	}
	if _, ok := p.Prewarm(31 * time.Minute); ok {
		t.Error("Prewarm(31m): the pre-warm has begun, none is ahead")
	}
	long := Plan{KeepFor: time.Hour}.Floor(6 * time.Minute)
	if long.KeepFor != time.Hour {
		t.Fatalf("a plan longer than the floor changed: %+v", long)
	}
	if _, ok := (Plan{KeepFor: 40 * time.Minute, PrewarmFrom: 30 * time.Minute, PrewarmUntil: time.Hour}).Prewarm(0); ok {
		t.Error("a pre-warm inside the keep-alive brings nothing back up")
	}
}
