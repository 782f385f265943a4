package decide

import (
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/keepalive"
	"github.com/orgscaler/orgscaler/trigger"
)

// Rules of a workload with a keep-alive policy.
const (
	RuleKeptAlive Rule = "keep-alive" // within the plan's keep-alive after the org's last activity
	RulePrewarm   Rule = "pre-warm"   // within the plan's pre-warm, ahead of the expected next activity
	RulePlanDown  Rule = "plan-down"  // the plan lets the workload go; no backlog keeps it
)

// planned is the org part of the answer for a workload with a keep-alive
// policy: whether the plan has it up now, and when that next changes.
func planned(w trigger.Workload, org OrgState, now time.Time) (rule Rule, next time.Time) {
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
