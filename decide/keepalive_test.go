package decide

import (
	"strings"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/keepalive"
	"github.com/orgscaler/orgscaler/trigger"
)

// A learned model is up by its org's plan, floored by minWarm, and each
// answer says when the next edge comes: the end of the keep-alive, the
// pre-warm's start (pushed as a wake), the pre-warm's end.
func TestDecideKeepAlive(t *testing.T) {
	md := map[string]string{"workload": "model", "org": "acme", "keepAlive": "learned", "coldStart": "3m"}
	w, err := trigger.ParseMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if w.KeepAlive != (trigger.KeepAlive{Policy: "learned", ColdStart: 3 * time.Minute, MinWarm: 6 * time.Minute}) {
		t.Fatalf("parsed %+v; want learned, a 3m cold start and minWarm its double", w.KeepAlive)
	}
	last := t0
	org := OrgState{LastActivity: last, ScaleToZeroAllowed: true, IdleWindow: 24 * time.Hour,
		Plan: keepalive.Plan{PrewarmFrom: 30 * time.Minute, PrewarmUntil: 40 * time.Minute, Why: "test"}}
	for _, c := range []struct {
		since   time.Duration
		active  bool
		rule    Rule
		next    time.Duration // zero: none
		prewarm time.Duration // zero: none ahead
	}{
		{time.Minute, true, RuleKeptAlive, 6*time.Minute + 1, 30 * time.Minute}, // the floor, not the plan's 0
		{10 * time.Minute, false, RulePlanDown, 30 * time.Minute, 30 * time.Minute},
		{31 * time.Minute, true, RulePrewarm, 40*time.Minute + 1, 0},
		{50 * time.Minute, false, RulePlanDown, 0, 0},
	} {
		a := Decide(w, org, Backlog{}, last.Add(c.since))
		var next, prewarm time.Time
		if c.next > 0 {
			next = last.Add(c.next)
		}
		if c.prewarm > 0 {
			prewarm = last.Add(c.prewarm)
		}
		if a.Active != c.active || a.Rule != c.rule || !a.NextChange.Equal(next) || !a.NextPrewarm().Equal(prewarm) {
			t.Errorf("%s after activity: active %v rule %s next %s pre-warm %s; want %v %s %s %s",
				c.since, a.Active, a.Rule, a.NextChange, a.NextPrewarm(), c.active, c.rule, next, prewarm)
		}
		if a.Reason() == "" || !strings.Contains(a.Reason(), "learned") {
			t.Errorf("%s: reason %q does not name the policy", c.since, a.Reason())
		}
	}
	if r := Decide(w, org, Backlog{}, last.Add(10*time.Minute)).Reason(); !strings.Contains(r, "pre-warm in 20m0s") {
		t.Errorf("down before a pre-warm: %q; want when it comes", r)
	}
	org.ScaleToZeroAllowed = false
	if a := Decide(w, org, Backlog{}, last.Add(10*time.Minute)); !a.Active || a.Rule != RuleScaleToZeroOff {
		t.Errorf("scale to zero off: %+v; want active whatever the plan", a)
	}
	plain, _ := trigger.ParseMetadata(map[string]string{"workload": "model", "org": "acme"})
	if w.MetricName() == plain.MetricName() {
		t.Error("a trigger with a keep-alive policy shares its metric name with one without")
	}
}
