package activity

import (
	"fmt"
	"time"

	"github.com/orgscaler/orgscaler/schedule"
	"github.com/orgscaler/orgscaler/warm"
)

// LimitError is activity for a new org refused because the store holds
// MaxOrgs orgs already.
type LimitError struct {
	Org string
	Max int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("org %q is new, and the scaler already holds its limit of %d orgs (--max-orgs): new orgs are refused until the limit is raised or orgs are deleted", e.Org, e.Max)
}

// Transition is an org waking or going dormant.
type Transition struct {
	Org          string
	Woke         bool       // false: went dormant
	Reason       WakeReason // why it woke
	LastActivity time.Time
	DormantSince time.Time // when it went dormant (for a wake: how long it slept)
	IdleWindow   time.Duration
}

// Org is a snapshot of one org.
type Org struct {
	ID                   string
	LastActivity         time.Time
	FirstSeen            time.Time
	DormantSince         time.Time // zero while active
	ScaleToZeroAllowed   bool
	IdleWindow           time.Duration // the window in force
	IdleWindowOverridden bool
	// WarmSchedule keeps the org warm inside its windows (nil: none).
	WarmSchedule *schedule.Schedule
	// PoolWeight is the org's weight in GPU pools (1 unless set).
	PoolWeight int64
	// WokeBy is the kind of the org's latest activity (activity or hint),
	// or admin when an admin change woke it since; it tells what turned a
	// workload active. Kept in memory only: "activity" after a restart.
	WokeBy WakeReason
}

// Dormant reports whether the org is dormant.
func (o Org) Dormant() bool { return !o.DormantSince.IsZero() }

// Warmth is the warm rule's verdict on the org at now (package warm):
// what activity's dormancy, KEDA's answers and the Knative actuator follow.
func (o Org) Warmth(now time.Time) warm.State {
	return warm.At(warm.Org{LastActivity: o.LastActivity, ScaleToZeroAllowed: o.ScaleToZeroAllowed,
		Window: o.IdleWindow, Schedule: o.WarmSchedule}, now)
}

// DormantAt is when an active org turns dormant if nothing happens; zero
// when dormant or never.
func (o Org) DormantAt(now time.Time) time.Time {
	if o.Dormant() {
		return time.Time{}
	}
	st := o.Warmth(now)
	if !st.Warm {
		return now // due: the store applies the rule at this instant
	}
	return st.Until
}

// wakeBy is a WakeReason in one byte: a million orgs keep one each.
type wakeBy uint8

const (
	byActivity wakeBy = iota
	byHint
	byAdmin
	bySchedule
)

func byOf(r WakeReason) wakeBy {
	switch r {
	case WakeHint:
		return byHint
	case WakeAdmin:
		return byAdmin
	case WakeSchedule:
		return bySchedule
	}
	return byActivity
}

func (b wakeBy) reason() WakeReason {
	return [...]WakeReason{byActivity: WakeActivity, byHint: WakeHint, byAdmin: WakeAdmin, bySchedule: WakeSchedule}[b]
}

// WakeReason says why a dormant org woke.
type WakeReason string

// Why an org wakes.
const (
	WakeActivity WakeReason = "activity"
	WakeHint     WakeReason = "hint"
	WakeAdmin    WakeReason = "admin"
	WakeSchedule WakeReason = "schedule" // a window of its warm schedule began
)
