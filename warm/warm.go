// Package warm is the one rule for whether an org is warm: activity's
// dormancy, KEDA's answers (decide) and the Knative actuator all ask it,
// so an org is never warm to one of them and dormant to another.
//
// An org is warm while its scale to zero is off, while its warm schedule
// is inside a window, or while now is before its last activity plus its
// window; it turns cold at the exact instant the last of these ends.
package warm

import (
	"time"

	"github.com/orgscaler/orgscaler/schedule"
)

// Org is what the rule reads of an org.
type Org struct {
	LastActivity       time.Time
	ScaleToZeroAllowed bool
	// Window is how long activity keeps the org warm; zero when activity
	// alone does not (a GPU worker without warmFor, a workload whose
	// keep-alive policy replaces the window).
	Window time.Duration
	// Schedule keeps the org warm inside its windows (nil: none).
	Schedule *schedule.Schedule
}

// Reason names what keeps an org warm.
type Reason uint8

// The reasons, in the order the rule tries them.
const (
	Cold           Reason = iota // nothing does
	ScaleToZeroOff               // the org may never scale to zero
	Scheduled                    // inside a window of its warm schedule
	Active                       // active within its window
)

// State is the rule's verdict on an org at one instant.
type State struct {
	Warm   bool
	Reason Reason
	// Until is, for a warm org, the instant it turns cold if nothing
	// happens (zero: never).
	Until time.Time
	// Since is, for a cold org, the instant it turned cold: the later of
	// its window's end and its schedule's last end.
	Since time.Time
	// Next is the next instant the verdict changes by itself (zero: only
	// an event can change it): Until for a warm org, the schedule's next
	// window for a cold one.
	Next time.Time
}

// At applies the rule to o at now.
func At(o Org, now time.Time) State {
	if !o.ScaleToZeroAllowed {
		return State{Warm: true, Reason: ScaleToZeroOff}
	}
	end := o.windowEnd()
	switch {
	case o.Schedule.Active(now):
		until := o.until(now)
		return State{Warm: true, Reason: Scheduled, Until: until, Next: until}
	case o.Window > 0 && now.Before(end):
		until := o.until(now)
		return State{Warm: true, Reason: Active, Until: until, Next: until}
	}
	since := end
	if last := o.Schedule.LastEnd(now); last.After(since) {
		since = last
	}
	return State{Reason: Cold, Since: since, Next: o.Schedule.Next(now)}
}

// windowEnd is when activity stops keeping o warm (its last activity when
// it has no window).
func (o Org) windowEnd() time.Time { return o.LastActivity.Add(o.Window) }

// until is when a warm o turns cold: the end of its window, or, if the
// schedule is inside a window then (or now, past the window), that
// window's end; zero for a schedule with no gap.
func (o Org) until(now time.Time) time.Time {
	at := o.windowEnd()
	if at.Before(now) {
		at = now
	}
	if o.Schedule.Active(at) {
		return o.Schedule.Next(at)
	}
	return at
}
