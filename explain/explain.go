// Package explain is one answer with every input behind it, as the KEDA
// scaler evaluated it: what `scalerctl explain` prints. Package scaler
// makes them from the same evaluation as KEDA's answers; package api
// sends them. Neither needs the other.
package explain

import (
	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/pool"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/trigger"
)

// Explanation is one answer and its inputs.
type Explanation struct {
	Metadata map[string]string
	Workload trigger.Workload
	Org      *activity.Org      // nil without an org
	Backlog  *pubsubdepth.Depth // nil without a subscription
	Answer   decide.Answer
	// Active is what IsActive answers (while blind, its last answer).
	Active bool
	// Err is what KEDA gets instead of an answer, if anything.
	Err error
	// IdleTimes and FleetIdleTimes are how many idle times the org and the
	// fleet show, for a trigger with a keep-alive policy.
	IdleTimes, FleetIdleTimes uint64
	// Seat is the trigger's place in its pool (Workload.Pool) at the
	// pool's last turn, of Waiting waiting members; nil when it names no
	// pool or has no seat yet.
	Seat    *pool.Seat
	Waiting int
}
