package decide

import (
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/keepalive"
)

// Metadata keys of a trigger's keep-alive policy.
const (
	KeyKeepAlive = "keepAlive"
	KeyColdStart = "coldStart"
	KeyMinWarm   = "minWarm"
)

// KeepAlive is a trigger's keep-alive policy, when it has one instead of
// a fixed window: the workload is up when the plan for its org's idle
// times says so, and at least MinWarm after any activity or pre-warm.
type KeepAlive struct {
	Policy    string // as keepalive.Parse reads it: "learned", "learned:20m", "hybrid"; empty: none
	ColdStart time.Duration
	MinWarm   time.Duration
}

// On reports whether the trigger has a keep-alive policy.
func (k KeepAlive) On() bool { return k.Policy != "" }

const keepAliveExpected = `"learned", "learned:PRICE" (a cold start's price in GPU-time, such as learned:20m) or "hybrid"`

func parseKeepAlive(md map[string]string, w *Workload) error {
	v, ok := md[KeyKeepAlive]
	if !ok {
		for _, k := range []string{KeyColdStart, KeyMinWarm} {
			if _, set := md[k]; set {
				return &MetadataError{Key: k, Value: Clip(md[k]), Expected: `"keepAlive" as well: it sets the keep-alive policy's ` + k}
			}
		}
		return nil
	}
	p, err := keepalive.Parse(v)
	if _, fixed := p.(keepalive.Fixed); err != nil || fixed {
		return &MetadataError{Key: KeyKeepAlive, Value: Clip(v), Expected: keepAliveExpected + `; a fixed window is "warmFor"`}
	}
	switch {
	case w.Org == "":
		return &MetadataError{Key: KeyKeepAlive, Value: Clip(v), Expected: `an "org" as well: the policy learns from the org's activity`}
	case md[KeyWarmFor] != "":
		return &MetadataError{Key: KeyKeepAlive, Value: Clip(v), Expected: `no "warmFor" with it: warmFor is a fixed window, keepAlive a policy instead of one`}
	}
	cold, ok := md[KeyColdStart]
	if !ok {
		return &MetadataError{Key: KeyColdStart, Missing: true, Expected: `the workload's measured cold start (from scale-up to serving), such as "3m", with "keepAlive"`}
	}
	k := KeepAlive{Policy: p.String()}
	if k.ColdStart, err = time.ParseDuration(cold); err != nil || k.ColdStart <= 0 || k.ColdStart > time.Hour {
		return &MetadataError{Key: KeyColdStart, Value: Clip(cold), Expected: `a Go duration above zero and at most 1h, such as "3m"`}
	}
	k.MinWarm = 2 * k.ColdStart
	if v, ok := md[KeyMinWarm]; ok {
		if k.MinWarm, err = time.ParseDuration(v); err != nil || k.MinWarm < 0 || k.MinWarm > keepalive.Range {
			return &MetadataError{Key: KeyMinWarm, Value: Clip(v),
				Expected: fmt.Sprintf(`a Go duration from 0 to %s, such as "6m" (default twice coldStart)`, keepalive.Range)}
		}
	}
	w.KeepAlive = k
	return nil
}

// Rules of a workload with a keep-alive policy.
const (
	RuleKeptAlive Rule = "keep-alive" // within the plan's keep-alive after the org's last activity
	RulePrewarm   Rule = "pre-warm"   // within the plan's pre-warm, ahead of the expected next activity
	RulePlanDown  Rule = "plan-down"  // the plan lets the workload go; no backlog keeps it
)

// planned is the org part of the answer for a workload with a keep-alive
// policy: whether the plan has it up now, and when that next changes.
func planned(w Workload, org OrgState, now time.Time) (rule Rule, next time.Time) {
	p := org.Plan.Floor(w.KeepAlive.MinWarm)
	since := now.Sub(org.LastActivity)
	if edge, ok := p.Next(since); ok {
		next = org.LastActivity.Add(edge)
	}
	switch {
	case since <= p.KeepFor:
		return RuleKeptAlive, next
	case p.Up(since):
		return RulePrewarm, next
	}
	return RulePlanDown, next
}

// NextPrewarm is when the plan next brings the workload back up by itself
// (zero: no pre-warm ahead), for a workload with a keep-alive policy.
func (a Answer) NextPrewarm() time.Time {
	if !a.w.KeepAlive.On() {
		return time.Time{}
	}
	p := a.org.Plan.Floor(a.w.KeepAlive.MinWarm)
	if at, ok := p.Prewarm(a.now.Sub(a.org.LastActivity)); ok {
		return a.org.LastActivity.Add(at)
	}
	return time.Time{}
}

// Plan is the keep-alive plan the answer followed, floored by minWarm;
// false for a workload without a keep-alive policy.
func (a Answer) Plan() (keepalive.Plan, bool) {
	if !a.w.KeepAlive.On() {
		return keepalive.Plan{}, false
	}
	return a.org.Plan.Floor(a.w.KeepAlive.MinWarm), true
}

func (a Answer) plannedReason() string {
	w, org := a.w, a.org
	p, _ := a.Plan()
	ago := a.now.Sub(org.LastActivity).Round(time.Second)
	switch a.Rule {
	case RuleKeptAlive:
		return fmt.Sprintf("org %s was active %s ago, within its %s keep-alive of %s (%s)", w.Org, ago, w.KeepAlive.Policy, p.KeepFor.Round(time.Second), p.Why)
	case RulePrewarm:
		return fmt.Sprintf("pre-warmed: org %s was last active %s ago, and its %s plan has it up from %s to %s after activity, %s before its expected next (%s)",
			w.Org, ago, w.KeepAlive.Policy, p.PrewarmFrom.Round(time.Second), p.PrewarmUntil.Round(time.Second), w.KeepAlive.ColdStart, p.Why)
	}
	reason := fmt.Sprintf("org %s was last active %s ago, past its %s keep-alive of %s", w.Org, ago, w.KeepAlive.Policy, p.KeepFor.Round(time.Second))
	if at := a.NextPrewarm(); !at.IsZero() {
		reason += fmt.Sprintf("; pre-warm in %s", at.Sub(a.now).Round(time.Second))
	}
	reason += " (" + p.Why + ")"
	if w.Subscription != "" {
		reason += fmt.Sprintf(", and backlog of %d messages is not above activationBacklog %d", a.backlog.Messages, w.ActivationBacklog)
	}
	return reason
}
