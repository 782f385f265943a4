package warm

import (
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/schedule"
)

func mustSchedule(t *testing.T, s string) *schedule.Schedule {
	t.Helper()
	sc, err := schedule.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// The rule's verdict, until when it holds and what comes next, for each
// way an org is kept warm or not.
func TestAt(t *testing.T) {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) // a Tuesday
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	office := mustSchedule(t, "daily 09:00-17:00 UTC")
	always := mustSchedule(t, "daily 00:00-24:00 UTC")
	tests := []struct {
		name string
		org  Org
		now  time.Time
		want State
	}{
		{"scale to zero off", Org{LastActivity: at(0, 0), Window: time.Hour}, at(20, 0),
			State{Warm: true, Reason: ScaleToZeroOff}},
		{"within the window", Org{LastActivity: at(1, 0), ScaleToZeroAllowed: true, Window: time.Hour}, at(1, 30),
			State{Warm: true, Reason: Active, Until: at(2, 0), Next: at(2, 0)}},
		{"at the window's end", Org{LastActivity: at(1, 0), ScaleToZeroAllowed: true, Window: time.Hour}, at(2, 0),
			State{Reason: Cold, Since: at(2, 0)}},
		{"no window: activity alone keeps nothing", Org{LastActivity: at(1, 0), ScaleToZeroAllowed: true}, at(1, 0),
			State{Reason: Cold, Since: at(1, 0)}},
		{"inside the schedule", Org{LastActivity: at(0, 0), ScaleToZeroAllowed: true, Window: time.Hour, Schedule: office}, at(10, 0),
			State{Warm: true, Reason: Scheduled, Until: at(17, 0), Next: at(17, 0)}},
		{"inside the schedule, the window past its end", Org{LastActivity: at(16, 30), ScaleToZeroAllowed: true, Window: time.Hour, Schedule: office}, at(16, 45),
			State{Warm: true, Reason: Scheduled, Until: at(17, 30), Next: at(17, 30)}},
		{"the window ends inside the schedule", Org{LastActivity: at(8, 30), ScaleToZeroAllowed: true, Window: time.Hour, Schedule: office}, at(8, 45),
			State{Warm: true, Reason: Active, Until: at(17, 0), Next: at(17, 0)}},
		{"cold before the schedule", Org{LastActivity: at(1, 0), ScaleToZeroAllowed: true, Window: time.Hour, Schedule: office}, at(8, 0),
			State{Reason: Cold, Since: at(2, 0), Next: at(9, 0)}},
		{"cold since the schedule ended", Org{LastActivity: at(1, 0), ScaleToZeroAllowed: true, Window: time.Hour, Schedule: office}, at(18, 0),
			State{Reason: Cold, Since: at(17, 0), Next: at(33, 0)}},
		{"a schedule with no gap never ends", Org{LastActivity: at(1, 0), ScaleToZeroAllowed: true, Window: time.Hour, Schedule: always}, at(18, 0),
			State{Warm: true, Reason: Scheduled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := At(tt.org, tt.now)
			if got.Warm != tt.want.Warm || got.Reason != tt.want.Reason || !got.Until.Equal(tt.want.Until) ||
				!got.Since.Equal(tt.want.Since) || !got.Next.Equal(tt.want.Next) {
				t.Errorf("At(%s) = %+v; want %+v", tt.now.Format("15:04"), got, tt.want)
			}
		})
	}
}

// Until is exact: the org is warm up to it and cold at it, and nothing
// changes between now and Next.
func TestUntilIsExact(t *testing.T) {
	day := time.Date(2026, 3, 27, 0, 0, 0, 0, time.UTC) // the weekend Europe's clocks change
	o := Org{LastActivity: day.Add(16 * time.Hour), ScaleToZeroAllowed: true, Window: 3 * time.Hour,
		Schedule: mustSchedule(t, "Mon-Fri 08:00-18:00 Europe/Berlin; Sat 10:00-12:00 Europe/Berlin")}
	for now := day; now.Before(day.Add(5 * 24 * time.Hour)); now = now.Add(7 * time.Minute) {
		st := At(o, now)
		if st.Next.IsZero() {
			continue
		}
		if !st.Next.After(now) {
			t.Fatalf("at %s: next %s is not ahead", now, st.Next)
		}
		if before := At(o, st.Next.Add(-time.Nanosecond)); before.Warm != st.Warm {
			t.Fatalf("at %s: warm %v, but %v just before its next change %s", now, st.Warm, before.Warm, st.Next)
		}
		if after := At(o, st.Next); after.Warm == st.Warm {
			t.Fatalf("at %s: warm %v, and still %v at its next change %s", now, st.Warm, after.Warm, st.Next)
		}
	}
}
