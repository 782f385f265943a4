package trigger

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
