package schedule

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// Working hours in New York keep their local hours across the switch to
// daylight saving time (Sunday 8 March 2026): 13:45 UTC on the Friday
// before, 12:45 UTC on the Monday after.
func TestWorkingHoursAcrossDST(t *testing.T) {
	s, err := Parse("mon-fri 08:45-18:00 America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "Mon,Tue,Wed,Thu,Fri 08:45-18:00 America/New_York" {
		t.Fatalf("String() = %q", got)
	}
	for _, c := range []struct {
		at     string
		active bool
		next   string
	}{
		{"2026-03-06T13:44:59Z", false, "2026-03-06T13:45:00Z"},
		{"2026-03-06T13:45:00Z", true, "2026-03-06T23:00:00Z"},
		{"2026-03-06T23:00:00Z", false, "2026-03-09T12:45:00Z"}, // the weekend, then EDT
		{"2026-03-09T12:45:00Z", true, "2026-03-09T22:00:00Z"},
	} {
		at := utc(c.at)
		if got := s.Active(at); got != c.active {
			t.Errorf("Active(%s) = %v; want %v", c.at, got, c.active)
		}
		if got := s.Next(at); !got.Equal(utc(c.next)) {
			t.Errorf("Next(%s) = %s; want %s", c.at, got.UTC().Format(time.RFC3339), c.next)
		}
	}
	if got := s.LastEnd(utc("2026-03-09T10:00:00Z")); !got.Equal(utc("2026-03-06T23:00:00Z")) {
		t.Errorf("LastEnd on Monday morning = %s; want Friday's end", got)
	}
}

// A window past midnight belongs to the day it starts; several windows
// that touch make one stretch.
func TestNightsAndSeveralWindows(t *testing.T) {
	s, err := Parse("Fri 22:00-02:00 UTC; Sat 02:00-04:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Active(utc("2026-03-07T01:00:00Z")) || s.Active(utc("2026-03-08T01:00:00Z")) {
		t.Fatal("Friday's night window runs into Saturday, not Sunday")
	}
	if got := s.Next(utc("2026-03-06T23:00:00Z")); !got.Equal(utc("2026-03-07T04:00:00Z")) {
		t.Fatalf("Next inside touching windows = %s; want their common end at 04:00", got)
	}
	daily, _ := Parse("daily 00:00-24:00 Europe/Paris")
	if !daily.Active(utc("2026-06-01T12:00:00Z")) || !daily.Next(utc("2026-06-01T12:00:00Z")).IsZero() {
		t.Fatal("a schedule of whole days never changes")
	}
	var none *Schedule
	if none.Active(time.Now()) || !none.Next(time.Now()).IsZero() || none.String() != "" {
		t.Fatal("no schedule is never active")
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Mon-Fri 08:45-18:00", "want 3 fields"},
		{"Mon-Fry 08:45-18:00 UTC", `days "Mon-Fry"`},
		{"Mon 8:45-25:00 UTC", `time "25:00"`},
		{"Mon 08:45-08:45 UTC", "must not be empty"},
		{"Mon 08:45-18:00 Mars/Olympus", `zone "Mars/Olympus"`},
		{"Mon 08:45-18:00 Local", `zone "Local"`},
		{strings.Repeat("Mon 08:00-09:00 UTC;", 17), "at most 16"},
	} {
		_, err := Parse(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want an error with %q", c.in, err, c.want)
		}
	}
	if s, err := Parse("  "); s != nil || err != nil {
		t.Errorf("blank: %v %v; want no schedule", s, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("Mon-Fri 08:45-18:00 America/New_York; Sat 10:00-14:00 UTC")
	f.Add("Fri-Mon 22:00-02:00 Asia/Kolkata")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil || s == nil {
			return
		}
		again, err := Parse(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("%q: canonical %q does not read back: %v", in, s.String(), err)
		}
		at := time.Date(2026, 3, 8, 6, 30, 0, 0, time.UTC)
		if next := s.Next(at); !next.IsZero() && s.Active(next) == s.Active(at) {
			t.Fatalf("%q: Next(%s) = %s does not change Active", in, at, next)
		}
	})
}
