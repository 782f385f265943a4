// Package schedule reads an org's warm schedule, such as "Mon-Fri
// 08:45-18:00 America/New_York; Sat 10:00-14:00 Europe/Paris", and says
// whether an instant falls inside it and when that next changes. Times are
// wall-clock times in each window's IANA zone, so a window keeps its local
// hours across daylight-saving changes.
package schedule

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones even in an image without /usr/share/zoneinfo
)

// Schedule is one or more weekly windows. The zero value and nil hold none.
type Schedule struct {
	windows []window
}

type window struct {
	days       [7]bool // by time.Weekday: the days a window starts on
	start, end int     // minutes of the day; end <= start runs past midnight
	loc        *time.Location
}

// MaxWindows bounds the windows of one schedule: a schedule is a few
// working hours, not a calendar.
const MaxWindows = 16

// Expected says what a schedule is, for error messages.
const Expected = `windows separated by ";", each DAYS HH:MM-HH:MM ZONE, such as "Mon-Fri 08:45-18:00 America/New_York" (DAYS: Mon..Sun, ranges and commas, or daily; ZONE: an IANA zone or UTC)`

// Parse reads a schedule. The empty string is no schedule (nil).
func Parse(s string) (*Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ";")
	if len(parts) > MaxWindows {
		return nil, fmt.Errorf("schedule has %d windows: at most %d", len(parts), MaxWindows)
	}
	out := &Schedule{}
	for _, p := range parts {
		w, err := parseWindow(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("schedule window %q: %w; expected %s", strings.TrimSpace(p), err, Expected)
		}
		out.windows = append(out.windows, w)
	}
	return out, nil
}

func parseWindow(s string) (window, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return window{}, fmt.Errorf("want 3 fields, got %d", len(f))
	}
	var w window
	var err error
	if w.days, err = parseDays(f[0]); err != nil {
		return window{}, err
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return window{}, fmt.Errorf("hours %q: want HH:MM-HH:MM", f[1])
	}
	if w.start, err = parseClock(from, false); err != nil {
		return window{}, err
	}
	if w.end, err = parseClock(to, true); err != nil {
		return window{}, err
	}
	if w.start == w.end {
		return window{}, fmt.Errorf("hours %q: a window must not be empty", f[1])
	}
	if w.loc, err = time.LoadLocation(f[2]); err != nil || f[2] == "Local" || f[2] == "" {
		return window{}, fmt.Errorf("zone %q is not an IANA zone", f[2])
	}
	return w, nil
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if l := strings.ToLower(s); l == "daily" || l == "*" {
		return [7]bool{true, true, true, true, true, true, true}, nil
	}
	for _, part := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, b := day(from), day(to)
		if !isRange {
			b = a
		}
		if a < 0 || b < 0 {
			return days, fmt.Errorf("days %q: want Mon..Sun, ranges such as Mon-Fri, commas, or daily", s)
		}
		for d := a; ; d = (d + 1) % 7 { // Fri-Mon wraps over the weekend
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return days, nil
}

func day(s string) int {
	if len(s) < 3 {
		return -1
	}
	return slices.Index(dayNames, strings.ToLower(s[:3]))
}

// parseClock reads HH:MM as minutes; 24:00 only as an end.
func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	switch {
	case !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59:
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	case hh == 24 && mm == 0 && end:
		return 24 * 60, nil
	case hh > 23:
		return 0, fmt.Errorf("time %q: hours run 00 to 23 (24:00 ends a day)", s)
	}
	return hh*60 + mm, nil
}

// String is the schedule in the form Parse reads, one canonical spelling.
func (s *Schedule) String() string {
	if s == nil {
		return ""
	}
	parts := make([]string, len(s.windows))
	for i, w := range s.windows {
		parts[i] = fmt.Sprintf("%s %s-%s %s", w.dayString(), clock(w.start), clock(w.end), w.loc)
	}
	return strings.Join(parts, "; ")
}

func (w window) dayString() string {
	if w.days == [7]bool{true, true, true, true, true, true, true} {
		return "daily"
	}
	var out []string
	for _, d := range []int{1, 2, 3, 4, 5, 6, 0} { // Mon first, as people write it
		if w.days[d] {
			out = append(out, strings.ToUpper(dayNames[d][:1])+dayNames[d][1:])
		}
	}
	return strings.Join(out, ",")
}

func clock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// stretch is one occurrence of a window: [from, to).
type stretch struct{ from, to time.Time }

// occurrences are the window's stretches starting on the days from
// around t-8 days to t+8 days, in its zone.
func (w window) occurrences(t time.Time) []stretch {
	lt := t.In(w.loc)
	var out []stretch
	for off := -8; off <= 8; off++ {
		d := time.Date(lt.Year(), lt.Month(), lt.Day()+off, 0, 0, 0, 0, w.loc)
		if !w.days[d.Weekday()] {
			continue
		}
		from := time.Date(d.Year(), d.Month(), d.Day(), w.start/60, w.start%60, 0, 0, w.loc)
		endDay := d.Day()
		if w.end <= w.start {
			endDay++
		}
		to := time.Date(d.Year(), d.Month(), endDay, w.end/60, w.end%60, 0, 0, w.loc)
		if to.After(from) { // a daylight-saving jump can swallow a short window
			out = append(out, stretch{from, to})
		}
	}
	return out
}

// merged are the schedule's stretches around t (about a week each way),
// overlapping and touching ones joined, in order: Active, Next and
// LastEnd are each one scan of them.
func (s *Schedule) merged(t time.Time) []stretch {
	var all []stretch
	for _, w := range s.windows {
		all = append(all, w.occurrences(t)...)
	}
	slices.SortFunc(all, func(a, b stretch) int { return a.from.Compare(b.from) })
	out := all[:0]
	for _, st := range all {
		if n := len(out); n > 0 && !st.from.After(out[n-1].to) {
			if st.to.After(out[n-1].to) {
				out[n-1].to = st.to
			}
			continue
		}
		out = append(out, st)
	}
	return out
}

// Active reports whether t falls inside a window.
func (s *Schedule) Active(t time.Time) bool {
	if s == nil {
		return false
	}
	for _, st := range s.merged(t) {
		if !t.Before(st.from) && t.Before(st.to) {
			return true
		}
	}
	return false
}

// Next is the first instant after t at which Active changes; zero when it
// never does (no schedule, or one that covers every day).
func (s *Schedule) Next(t time.Time) time.Time {
	if s == nil {
		return time.Time{}
	}
	for _, st := range s.merged(t) {
		switch {
		case st.from.After(t):
			return st.from
		case st.to.Sub(t) > 7*24*time.Hour:
			return time.Time{} // no gap in a whole week: a weekly schedule never has one
		case st.to.After(t):
			return st.to
		}
	}
	return time.Time{}
}

// LastEnd is the latest instant at or before t at which a stretch of the
// schedule ended; zero when none did in the week before.
func (s *Schedule) LastEnd(t time.Time) time.Time {
	if s == nil {
		return time.Time{}
	}
	var last time.Time
	for _, st := range s.merged(t) {
		if !st.to.After(t) {
			last = st.to
		}
	}
	return last
}
