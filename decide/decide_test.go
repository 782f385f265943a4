package decide

import (
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/trigger"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	pynode := trigger.Workload{Kind: trigger.KindPynode, Org: "acme", MessagesPerReplica: 1}
	model1h := trigger.Workload{Kind: trigger.KindModel, Org: "acme", MessagesPerReplica: 1, WarmFor: time.Hour}
	modelSub := trigger.Workload{Kind: trigger.KindModel, Org: "acme", Subscription: "projects/p-1234/subscriptions/jobs", MessagesPerReplica: 10, ActivationBacklog: 5}
	worker := trigger.Workload{Kind: trigger.KindWorker, Subscription: "projects/p-1234/subscriptions/jobs", MessagesPerReplica: 4}
	orgWorker := trigger.Workload{Kind: trigger.KindWorker, Org: "acme", Subscription: "projects/p-1234/subscriptions/jobs", MessagesPerReplica: 4}
	orgWorkerWarm := orgWorker
	orgWorkerWarm.WarmFor = 30 * time.Minute
	org := func(ago time.Duration) OrgState {
		return OrgState{LastActivity: t0.Add(-ago), ScaleToZeroAllowed: true, IdleWindow: 24 * time.Hour}
	}
	vip := OrgState{LastActivity: t0.Add(-1000 * time.Hour), ScaleToZeroAllowed: false, IdleWindow: 24 * time.Hour}
	backlog := func(n int64) Backlog { return Backlog{Known: true, Messages: n, ObservedAt: t0} }

	tests := []struct {
		name       string
		w          trigger.Workload
		org        OrgState
		b          Backlog
		active     bool
		replicas   int64
		rule       Rule
		nextChange time.Time
	}{
		{"pynode just active", pynode, org(0), Backlog{}, true, 1, RuleWarm, t0.Add(24 * time.Hour)},
		{"pynode 1ns before window ends", pynode, org(24*time.Hour - 1), Backlog{}, true, 1, RuleWarm, t0.Add(1)},
		{"pynode at window end", pynode, org(24 * time.Hour), Backlog{}, false, 0, RuleIdle, time.Time{}},
		{"scale to zero off", pynode, vip, Backlog{}, true, 1, RuleScaleToZeroOff, time.Time{}},
		{"warmFor shorter than org window: cold", model1h, org(2 * time.Hour), Backlog{}, false, 0, RuleIdle, time.Time{}},
		{"warmFor shorter than org window: warm", model1h, org(30 * time.Minute), Backlog{}, true, 1, RuleWarm, t0.Add(30 * time.Minute)},
		{"warmFor with scale to zero off", model1h, vip, Backlog{}, true, 1, RuleScaleToZeroOff, time.Time{}},
		{"model cold, backlog at activation", modelSub, org(48 * time.Hour), backlog(5), false, 0, RuleIdle, time.Time{}},
		{"model cold, backlog above activation", modelSub, org(48 * time.Hour), backlog(25), true, 3, RuleBacklog, time.Time{}},
		{"model warm and backlog", modelSub, org(time.Hour), backlog(25), true, 3, RuleWarm, time.Time{}},
		{"model warm, small backlog ends with window", modelSub, org(time.Hour), backlog(3), true, 1, RuleWarm, t0.Add(23 * time.Hour)},
		{"model blind", modelSub, org(time.Hour), Backlog{}, true, 0, RuleBlind, t0.Add(23 * time.Hour)}, // warm, blind: until its window ends
		{"worker empty", worker, OrgState{}, backlog(0), false, 0, RuleNoBacklog, time.Time{}},
		{"worker one message", worker, OrgState{}, backlog(1), true, 1, RuleBacklog, time.Time{}},
		{"worker 9 messages, 4 per replica", worker, OrgState{}, backlog(9), true, 3, RuleBacklog, time.Time{}},
		{"worker blind", worker, OrgState{}, Backlog{}, false, 0, RuleBlind, time.Time{}},
		{"org worker not warmed by org activity", orgWorker, org(0), backlog(0), false, 0, RuleNoBacklog, time.Time{}},
		{"org worker on backlog", orgWorker, org(0), backlog(8), true, 2, RuleBacklog, time.Time{}},
		{"org worker with warmFor", orgWorkerWarm, org(10 * time.Minute), backlog(0), true, 1, RuleWarm, t0.Add(20 * time.Minute)},
		{"org worker, scale to zero off", orgWorker, vip, backlog(0), true, 1, RuleScaleToZeroOff, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Decide(tt.w, tt.org, tt.b, t0)
			if a.Active != tt.active || a.Replicas != tt.replicas || a.Rule != tt.rule || !a.NextChange.Equal(tt.nextChange) {
				t.Fatalf("got active=%v replicas=%d rule=%s next=%v (%s); want active=%v replicas=%d rule=%s next=%v",
					a.Active, a.Replicas, a.Rule, a.NextChange, a.Reason(), tt.active, tt.replicas, tt.rule, tt.nextChange)
			}
			if a.Reason() == "" {
				t.Fatal("every answer needs a reason")
			}
		})
	}
}

// Blind keeps the last answer; with none, there is no answer.
func TestHold(t *testing.T) {
	w := trigger.Workload{Kind: trigger.KindWorker, Subscription: "projects/p/subscriptions/s", MessagesPerReplica: 1}
	blind := Decide(w, OrgState{}, Backlog{}, time.Unix(100, 0))
	seen := Decide(w, OrgState{}, Backlog{Known: true, Messages: 3}, time.Unix(100, 0))
	for _, c := range []struct {
		name             string
		a                Answer
		last, hasLast    bool
		wantActive, okay bool
	}{
		{"blind, last active", blind, true, true, true, true},
		{"blind, last inactive", blind, false, true, false, true},
		{"blind, nothing said yet", blind, false, false, false, false},
		{"seen overrides the last", seen, false, true, true, true},
	} {
		if active, ok := Hold(c.a, c.last, c.hasLast); active != c.wantActive || ok != c.okay {
			t.Errorf("%s: got active=%v ok=%v, want %v %v", c.name, active, ok, c.wantActive, c.okay)
		}
	}
}

// A pooled answer never asks for more than the seat's share, is active
// only with a share, and stays blind when blind (an error for KEDA, not a
// cap).
func TestPooled(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	w := trigger.Workload{Kind: trigger.KindWorker, Subscription: "projects/p/subscriptions/jobs", MessagesPerReplica: 1}
	a := Decide(w, OrgState{}, Backlog{Known: true, Messages: 8}, now)
	if p := Pooled(a, Seat{Pool: "gpus", Share: 3}); !p.Active || p.Replicas != 3 || p.Rule != RulePoolCapped ||
		p.Reason() != "pool gpus grants 3 of the 8 replicas it wants" {
		t.Fatalf("capped: %+v %q", p, p.Reason())
	}
	if p := Pooled(a, Seat{Pool: "gpus", Share: 0, Queued: 3, Waiting: 6}); p.Active || p.Replicas != 0 || p.Reason() != "queued: pool gpus full (#3 of 6)" {
		t.Fatalf("queued: %+v %q", p, p.Reason())
	}
	if p := Pooled(a, Seat{Pool: "gpus", Share: 9}); p.Replicas != 8 || p.Rule != RuleBacklog {
		t.Fatalf("a share above the demand asks only the demand: %+v", p)
	}
	blind := Decide(w, OrgState{}, Backlog{}, now)
	if p := Pooled(blind, Seat{Pool: "gpus", Share: 2}); !p.Blind() {
		t.Fatalf("blind stays blind: %+v", p)
	}
}
