// Package decide holds the one rule every answer of the scaler comes from:
// given a workload (package trigger), its org's state, its backlog and the
// time, should it run and with how many replicas. It knows nothing of gRPC,
// storage or clocks; whether the org is warm is package warm's rule.
package decide

import (
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/keepalive"
	"github.com/orgscaler/orgscaler/schedule"
	"github.com/orgscaler/orgscaler/trigger"
	"github.com/orgscaler/orgscaler/warm"
)

// OrgState is what the decision needs to know about an org.
type OrgState struct {
	LastActivity       time.Time
	ScaleToZeroAllowed bool
	IdleWindow         time.Duration // the window in force: the org's override or the default
	// Schedule is the org's warm schedule: inside its windows every
	// workload of the org is warm (nil: none).
	Schedule *schedule.Schedule
	// Plan is the keep-alive policy's plan for the org's idle times, for a
	// workload with a keep-alive policy (it replaces the window there).
	Plan keepalive.Plan
}

// Backlog is what is known of a subscription's queue.
type Backlog struct {
	Known      bool
	Messages   int64
	ObservedAt time.Time
}

// Rule names the rule that decided an answer.
type Rule string

// The rules, in the order they are tried.
const (
	RuleScaleToZeroOff Rule = "scale-to-zero-off" // the org may never scale to zero
	RuleWarm           Rule = "warm"              // the org was active within the window
	RuleSchedule       Rule = "schedule"          // inside a window of the org's warm schedule
	RuleBacklog        Rule = "backlog"           // the backlog is above activationBacklog
	RuleIdle           Rule = "idle"              // the window has passed and there is no backlog
	RuleNoBacklog      Rule = "no-backlog"        // a worker without an org, backlog at or below activation
	RuleBlind          Rule = "backlog-unknown"   // the backlog is needed and not known
)

// Answer is the decision for one workload at one instant.
type Answer struct {
	Active   bool
	Replicas int64 // the metric value KEDA gets; the HPA turns it into replicas with target 1
	Rule     Rule
	// WarmUntil is when the org-activity part of the answer ends; zero when
	// the workload has no org or the org never scales to zero.
	WarmUntil time.Time
	// NextChange is when the answer changes if nothing else happens; zero
	// when only a new event (activity, backlog) can change it.
	NextChange time.Time

	// The inputs, kept so Reason is written only when someone reads it:
	// KEDA's answers never need the words.
	w       trigger.Workload
	org     OrgState
	backlog Backlog
	now     time.Time
	seat    Seat // in a pool: the seat it was capped by
}

// At is the instant the answer was decided for.
func (a Answer) At() time.Time { return a.now }

// Blind reports whether the answer could not be given: the backlog is
// needed, not known, and nothing else keeps the workload active.
func (a Answer) Blind() bool { return a.Rule == RuleBlind && !a.Active }

// Hold is what IsActive says for answer a, given the last thing said for
// the same workload (hasLast false when nothing was). Being blind is not
// an empty queue: a blind answer keeps the last one, and with none there
// is nothing true to say (ok false: the caller returns an error, so KEDA's
// fallback engages). IsActive, the streams and explain all use it.
func Hold(a Answer, last, hasLast bool) (active, ok bool) {
	if !a.Blind() {
		return a.Active, true
	}
	return last, hasLast
}

// Window is the warm window of a workload in an org: its own warmFor, else
// the org's idle window.
func Window(w trigger.Workload, org OrgState) time.Duration {
	if w.WarmFor > 0 {
		return w.WarmFor
	}
	return org.IdleWindow
}

// Decide is the one place every answer comes from. org is ignored for a
// workload without an org; backlog is ignored for one without a subscription.
//
// A workload with an org is warm when the warm rule (package warm) says
// so with the workload's window (warmFor, else the org's idle window; a
// worker only with warmFor), or when its keep-alive plan has it up.
// Active = warm, or backlog above activationBacklog.
func Decide(w trigger.Workload, org OrgState, backlog Backlog, now time.Time) Answer {
	a := Answer{w: w, org: org, backlog: backlog, now: now}
	var st warm.State
	if w.Org != "" {
		wo := warmOrg(w, org)
		st = warm.At(wo, now)
		switch {
		case st.Warm:
			a.Rule, a.WarmUntil, a.NextChange = ruleOf[st.Reason], st.Until, st.Until
		case w.KeepAlive.On():
			a.Rule, a.NextChange = planned(w, org, now)
		case wo.Window > 0:
			a.WarmUntil = wo.LastActivity.Add(wo.Window)
		}
	}
	isWarm := st.Warm || a.Rule == RuleKeptAlive || a.Rule == RulePrewarm
	if w.Subscription != "" {
		if !backlog.Known {
			// NextChange stays: when the warmth or a keep-alive period
			// ends, or a pre-warm begins, a stream looks again.
			a.Rule, a.Active = RuleBlind, isWarm
			return a
		}
		a.Replicas = ceilDiv(backlog.Messages, w.MessagesPerReplica)
		if !isWarm && backlog.Messages > w.ActivationBacklog {
			a.Rule = RuleBacklog
		}
	}
	a.Active = isWarm || (w.Subscription != "" && backlog.Messages > w.ActivationBacklog)
	if !a.Active {
		a.Replicas = 0
		// The schedule's next window wakes it, as may a pre-warm first.
		a.NextChange = Earliest(a.NextChange, st.Next)
		switch {
		case w.KeepAlive.On() && org.ScaleToZeroAllowed:
			a.Rule = RulePlanDown // NextChange stays: the pre-warm, if one is ahead
		case w.Org == "" || (w.Kind == trigger.KindWorker && w.WarmFor == 0):
			a.Rule = RuleNoBacklog
		default:
			a.Rule = RuleIdle
		}
		return a
	}
	if a.Replicas < 1 {
		a.Replicas = 1
	}
	// Only the warm window runs out by itself; while the backlog alone keeps
	// the workload active, new backlog data is what changes the answer.
	backlogged := w.Subscription != "" && backlog.Messages > w.ActivationBacklog
	switch {
	case backlogged:
		a.NextChange = time.Time{}
	case a.Rule == RuleWarm:
		a.NextChange = a.WarmUntil
	}
	return a
}

// ruleOf names the rule of each reason the warm rule gives.
var ruleOf = map[warm.Reason]Rule{
	warm.ScaleToZeroOff: RuleScaleToZeroOff,
	warm.Scheduled:      RuleSchedule,
	warm.Active:         RuleWarm,
}

// warmOrg is what the warm rule reads for w in org: the workload's own
// window, or none where activity alone does not keep it warm (a GPU
// worker without warmFor; a keep-alive policy, whose plan replaces it).
func warmOrg(w trigger.Workload, org OrgState) warm.Org {
	window := Window(w, org)
	if w.KeepAlive.On() || (w.Kind == trigger.KindWorker && w.WarmFor == 0) {
		window = 0
	}
	return warm.Org{LastActivity: org.LastActivity, ScaleToZeroAllowed: org.ScaleToZeroAllowed, Window: window, Schedule: org.Schedule}
}

// Earliest is the earlier of two instants, zero meaning never: when the
// first of two changes comes.
func Earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// Reason says in words why the answer is what it is.
func (a Answer) Reason() string {
	w, org, b := a.w, a.org, a.backlog
	switch a.Rule {
	case RuleScaleToZeroOff:
		return fmt.Sprintf("org %s has scale to zero turned off", w.Org)
	case RuleWarm:
		return fmt.Sprintf("org %s was active %s ago, within its %s window",
			w.Org, a.now.Sub(org.LastActivity).Round(time.Second), Window(w, org))
	case RuleSchedule:
		until := "for good (it covers every day, all day)"
		if !a.WarmUntil.IsZero() {
			until = "until " + a.WarmUntil.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("org %s is inside its warm schedule (%s), warm %s", w.Org, org.Schedule, until)
	case RuleKeptAlive, RulePrewarm, RulePlanDown:
		return a.plannedReason()
	case RulePoolQueued, RulePoolCapped:
		return a.poolReason()
	case RuleBlind:
		return fmt.Sprintf("backlog of %s is not known", w.Subscription)
	case RuleBacklog:
		return fmt.Sprintf("backlog of %d messages is above activationBacklog %d", b.Messages, w.ActivationBacklog)
	case RuleNoBacklog:
		return fmt.Sprintf("backlog of %d messages is not above activationBacklog %d", b.Messages, w.ActivationBacklog)
	case RuleIdle:
		reason := fmt.Sprintf("org %s was last active %s ago, past its %s window",
			w.Org, a.now.Sub(org.LastActivity).Round(time.Second), Window(w, org))
		if w.Subscription != "" {
			reason += fmt.Sprintf(", and backlog of %d messages is not above activationBacklog %d",
				b.Messages, w.ActivationBacklog)
		}
		return reason
	default:
		return ""
	}
}

func ceilDiv(n, d int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n + d - 1) / d
}
