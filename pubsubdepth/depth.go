// Package pubsubdepth knows the backlog of Pub/Sub subscriptions: a Source
// reads it (Cloud Monitoring in production, an embedded Pub/Sub for local
// work), a Tracker keeps it fresh in the background for the subscriptions
// being asked about, overlays enqueue hints, and answers from memory.
package pubsubdepth

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Point is one observation of a subscription's backlog.
type Point struct {
	Messages int64
	At       time.Time // when the backlog was observed (not when it was fetched)
}

// Source reads the newest backlog of subscriptions (full names,
// projects/P/subscriptions/S). A subscription missing from the answer has
// no point in the source right now: not proof of an empty queue.
type Source interface {
	Fetch(ctx context.Context, subs []string) (map[string]Point, error)
}

// Existence is what is known of whether a subscription exists.
type Existence int

// Existence states.
const (
	ExistenceUnknown Existence = iota
	Exists
	Missing
)

func (e Existence) String() string {
	switch e {
	case Exists:
		return "exists"
	case Missing:
		return "not found"
	default:
		return "unchecked"
	}
}

// Depth is what the tracker knows of one subscription at one instant.
type Depth struct {
	Subscription string
	// Known is true when Messages can be trusted: a point younger than the
	// max age, an existing subscription that never had a point (0), or a
	// hint in force.
	Known bool
	// Messages is the observed backlog plus any hint in force.
	Messages int64
	// Observed is the newest point, if any; zero At when none.
	Observed Point
	// Hint is the number of hinted messages still counted, and HintAt the
	// last hint's arrival.
	Hint   int64
	HintAt time.Time
	Exists Existence
	// Err is the last fetch error, if the last fetch failed.
	Err error
	// Until is when this answer changes by itself (the point or the hint
	// grows too old); zero when only new data can change it.
	Until time.Time

	// Why the backlog is or is not known, put in words only by Reason:
	// KEDA's answers never need the words.
	why        why
	age        time.Duration
	maxAge     time.Duration
	emptyAfter time.Duration
}

type why int

const (
	whyNotFetched why = iota
	whyFresh
	whyMissing
	whyNoPointYet
	whyStale
	whyFetchFailed
	whyUnconfirmed
)

// Reason says in words why the backlog is or is not known.
func (d Depth) Reason() string {
	var r string
	switch d.why {
	case whyFresh:
		r = fmt.Sprintf("%d messages observed %s ago", d.Observed.Messages, d.age.Round(time.Second))
	case whyMissing:
		r = "the subscription does not exist"
	case whyNoPointYet:
		r = fmt.Sprintf("the subscription exists and has had no point over the last %s: 0 messages", d.emptyAfter)
	case whyStale:
		r = fmt.Sprintf("the last point is %s old, older than the depth max age %s", d.age.Round(time.Second), d.maxAge)
	case whyFetchFailed:
		r = fmt.Sprintf("fetching the backlog failed: %v", d.Err)
	case whyNotFetched:
		r = "the backlog has not been fetched yet"
	default:
		r = "no point yet, and the subscription is not confirmed to exist"
	}
	if d.Hint > 0 {
		r += fmt.Sprintf(", plus %d hinted messages", d.Hint)
	}
	return r
}

// ErrNotFound is returned for a subscription that does not exist.
var ErrNotFound = errors.New("subscription not found")

// ParseName splits projects/P/subscriptions/S.
func ParseName(sub string) (project, id string, err error) {
	parts := strings.Split(sub, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "subscriptions" || parts[1] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("subscription %q: expected projects/PROJECT/subscriptions/SUBSCRIPTION", sub)
	}
	return parts[1], parts[3], nil
}

// FetchError is a fetch that failed for some subscriptions only (one
// project's query failed): the others' points stand.
type FetchError struct {
	bySub map[string]error
}

// For returns the error of sub's query, or nil if it succeeded.
func (e *FetchError) For(sub string) error { return e.bySub[sub] }

func (e *FetchError) Error() string {
	seen := map[string]bool{}
	var msgs []string
	for _, err := range e.bySub {
		if m := err.Error(); !seen[m] {
			seen[m] = true
			msgs = append(msgs, m)
		}
	}
	sort.Strings(msgs)
	return strings.Join(msgs, "; ")
}
