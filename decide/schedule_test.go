package decide

import (
	"strings"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/schedule"
	"github.com/orgscaler/orgscaler/trigger"
)

// Inside the org's warm schedule every workload of the org is warm, a GPU
// worker too, whatever the activity; outside it, the next window's start
// is when the answer changes, so streams push true at it.
func TestDecideSchedule(t *testing.T) {
	sched, err := schedule.Parse("daily 09:00-17:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	org := OrgState{LastActivity: day.Add(-48 * time.Hour), ScaleToZeroAllowed: true, IdleWindow: time.Hour, Schedule: sched}
	worker := trigger.Workload{Kind: trigger.KindWorker, Org: "acme", Subscription: "projects/p-1234/subscriptions/jobs", MessagesPerReplica: 1}
	pynode := trigger.Workload{Kind: trigger.KindPynode, Org: "acme", MessagesPerReplica: 1}
	empty := Backlog{Known: true}
	for _, w := range []trigger.Workload{worker, pynode} {
		a := Decide(w, org, empty, day.Add(8*time.Hour))
		if a.Active || !a.NextChange.Equal(day.Add(9*time.Hour)) {
			t.Errorf("%s at 08:00: active %v next %s; want inactive until 09:00", w.Kind, a.Active, a.NextChange)
		}
		a = Decide(w, org, empty, day.Add(10*time.Hour))
		if !a.Active || a.Rule != RuleSchedule || !a.NextChange.Equal(day.Add(17*time.Hour)) || !strings.Contains(a.Reason(), "warm schedule") {
			t.Errorf("%s at 10:00: %v %s next %s (%s); want warm by the schedule until 17:00", w.Kind, a.Active, a.Rule, a.NextChange, a.Reason())
		}
	}
}
