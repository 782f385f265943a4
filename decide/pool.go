package decide

import "fmt"

// The rules of a pooled answer, after Decide's.
const (
	RulePoolQueued Rule = "pool-queued" // it wants to run; its pool has no share for it yet
	RulePoolCapped Rule = "pool-capped" // it runs with its pool's share, less than it wants
)

// Seat is a pooled workload's place in its pool at the pool's last turn.
type Seat struct {
	Pool  string
	Share int64 // replicas granted
	// Queued is its place among the members waiting to wake (1-based; 0:
	// not waiting), of Waiting.
	Queued, Waiting int
	wanted          int64 // the replicas of the answer it capped
}

// Pooled is a's answer within a pool: never more replicas than the seat's
// share, and active only with a share. Being capped is never blind (KEDA's
// fallback would bypass the pool): a blind answer stays blind, and one
// the pool holds back is an answer like any other. NextChange is left to
// the pool: its turns push the streams.
func Pooled(a Answer, s Seat) Answer {
	s.wanted = a.Replicas
	a.seat = s
	if a.Blind() || !a.Active {
		return a
	}
	if s.Share <= 0 {
		a.Active, a.Replicas, a.Rule = false, 0, RulePoolQueued
		return a
	}
	if a.Replicas > s.Share {
		a.Replicas, a.Rule = s.Share, RulePoolCapped
	}
	return a
}

// poolReason says why a pooled answer is what it is.
func (a Answer) poolReason() string {
	s := a.seat
	switch a.Rule {
	case RulePoolQueued:
		if s.Queued > 0 {
			return fmt.Sprintf("queued: pool %s full (#%d of %d)", s.Pool, s.Queued, s.Waiting)
		}
		return fmt.Sprintf("queued: pool %s has no share for it yet", s.Pool)
	case RulePoolCapped:
		return fmt.Sprintf("pool %s grants %d of the %d replicas it wants", s.Pool, s.Share, s.wanted)
	}
	return ""
}
