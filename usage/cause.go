package usage

import (
	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/trigger"
)

// AnswerOf is an answer as the ledger keeps it: what was asked, and which
// rule's cause made it active.
func AnswerOf(w trigger.Workload, a decide.Answer, o activity.Org) Answer {
	u := Answer{Kind: string(w.Kind), Org: w.Org, GPUs: w.GPUsPerReplica, GPUType: w.GPUType, Active: a.Active, Replicas: a.Replicas}
	if a.Active {
		u.Replicas = max(1, a.Replicas) // warm while blind: at least the one replica KEDA keeps
	}
	switch a.Rule {
	case decide.RuleBacklog:
		u.Cause = CauseBacklog
	case decide.RuleSchedule:
		u.Cause = CauseSchedule
	case decide.RulePrewarm:
		u.Cause = CausePrewarm
	case decide.RuleScaleToZeroOff:
		u.Cause = CauseAdmin
	default:
		u.Cause = OrgCause(o)
	}
	return u
}

// OrgCause is what last woke the org, as the ledger counts a wake: the
// cause of an org workload's warmth when no rule of its own brought it up
// (also for a Knative Service, which has no trigger).
func OrgCause(o activity.Org) Cause {
	switch o.WokeBy {
	case activity.WakeAdmin:
		return CauseAdmin
	case activity.WakeHint:
		return CauseHint
	case activity.WakeSchedule:
		return CauseSchedule
	default:
		return CauseActivity
	}
}
