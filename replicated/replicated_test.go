package replicated

import (
	"context"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/history"
	"github.com/orgscaler/orgscaler/hlc"
	"github.com/orgscaler/orgscaler/idletimes"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/usage"
)

// Every kind crosses the wire unchanged: activity, settings with their
// stamps, settings not in the change, deletes; counts; days; hours.
func TestEveryKindRoundTrips(t *testing.T) {
	off, window, sched := false, 2*time.Hour, "Mon-Fri 08:00-18:00 Europe/Berlin"
	for _, c := range []activity.Change{
		{Org: "acme", Activity: time.Unix(1_700_000_000, 123).UTC()},
		{Org: "acme", ScaleToZero: &off, ScaleToZeroAt: hlc.Stamp(42)},
		{Org: "globex", IdleWindow: &window, IdleWindowAt: hlc.Stamp(43), Activity: time.Unix(1_700_000_001, 0).UTC()},
		{Org: "globex", WarmSchedule: &sched, WarmScheduleAt: hlc.Stamp(44)},
		{Org: "gone", Deleted: hlc.Stamp(45)},
	} {
		roundTrip(t, Orgs(), c)
	}
	var counts idletimes.Counts
	counts.Org, counts.Replica, counts.History.Over = "acme", "scaler-1", 3
	counts.History.Bins[0], counts.History.Bins[len(counts.History.Bins)-1] = 7, 9
	roundTrip(t, IdleTimes(), counts)
	day := history.Day{Org: "acme", Day: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}
	day.Bits.Set(0)
	day.Bits.Set(1439)
	roundTrip(t, Days(), day)
	hour := usage.Hour{Start: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), ID: usage.ID("ml/pynode", "m"), Term: "scaler-0-3",
		Figures: usage.Figures{Kind: "model", Org: "acme", GPUs: 2, Tracked: time.Hour, Active: time.Minute, GPUTime: 2 * time.Minute}}
	hour.Wakes[1] = 2
	hour.GPUType = "a100"
	roundTrip(t, Hours(), hour)
}

func roundTrip[T any, M proto.Message](t *testing.T, k replication.Kind[T, M], item T) {
	t.Helper()
	out, ok := k.Decode(k.Encode(item))
	if !ok || !reflect.DeepEqual(item, out) {
		t.Errorf("%s round trip:\n in %+v\nout %+v (kept %v)", k.Name, item, out, ok)
	}
}

// Activity alone coalesces to an org's latest instant; a setting or a
// delete is queued as it is, never folded into activity.
func TestOnlyActivityCoalesces(t *testing.T) {
	sched := "Mon-Fri 08:00-18:00 Europe/Berlin"
	k := Orgs()
	early, late := activity.Change{Org: "acme", Activity: time.Unix(1, 0)}, activity.Change{Org: "acme", Activity: time.Unix(2, 0)}
	if key, ok := k.Key(early); !ok || key != "acme" {
		t.Fatalf("activity alone keyed %v, %v; want by its org", key, ok)
	}
	if got := k.Coalesce(late, early); got != late {
		t.Fatalf("coalesced to %v; want the later activity", got.Activity)
	}
	for _, c := range []activity.Change{
		{Org: "acme", WarmSchedule: &sched, WarmScheduleAt: 7, Activity: time.Unix(3, 0)},
		{Org: "acme", Deleted: 8},
	} {
		if _, ok := k.Key(c); ok {
			t.Errorf("%+v is keyed: a setting or delete would be folded into activity", c)
		}
	}
}

// A change from another replica naming no valid org is dropped; its
// stamps further ahead than the bound are held to it; negative stamps
// (a forged message) are dropped.
func TestChangesAreHeld(t *testing.T) {
	limit := time.Unix(1_800_000_000, 0)
	lim := hlc.Stamp(limit.UnixNano())
	on := true
	k := Orgs()
	c, held, ok := k.Hold(activity.Change{Org: "acme", Activity: limit.Add(time.Hour), ScaleToZero: &on, ScaleToZeroAt: lim + 1, Deleted: hlc.Stamp(1 << 62)}, limit)
	if !ok || held != 3 || !c.Activity.Equal(limit) || c.ScaleToZeroAt != lim || c.Deleted != lim {
		t.Fatalf("held %d (kept %v): %+v; want all 3 stamps held to the limit", held, ok, c)
	}
	if _, _, ok := k.Hold(activity.Change{Org: "acme", Activity: limit.Add(-time.Hour)}, limit); !ok {
		t.Fatal("a change within the bound was dropped")
	}
	for _, bad := range []activity.Change{{Org: "Not An Org!"}, {Org: ""}, {Org: "acme", Deleted: -1}, {Org: "acme", ScaleToZero: &on, ScaleToZeroAt: -5}} {
		if _, _, ok := k.Hold(bad, limit); ok {
			t.Errorf("%+v kept; want it dropped", bad)
		}
	}
}

// Two replicas over a MemoryTopic with the real org store: activity
// recorded on one is on the other, and a snapshot of either holds it.
func TestOrgsReplicateInMemory(t *testing.T) {
	topic := replication.NewMemoryTopic(nil)
	start := func(replica string) (*replication.Replicator, *replication.Kinds, *activity.Store) {
		ks := replication.NewKinds(nil, 0)
		r, err := replication.New(context.Background(), replication.Options{Topic: "projects/p/topics/replication", Replica: replica,
			Transport: topic.Transport("projects/p/subscriptions/replication-" + replica), Kinds: ks})
		if err != nil {
			t.Fatal(err)
		}
		out := &Outboxes{publish: true, orgs: replication.Register(ks, Orgs())}
		store, err := activity.Open(activity.Options{Dir: t.TempDir(), IdleWindow: time.Hour, FlushInterval: time.Second, Replica: replica, OnChange: out.OnChange()})
		if err != nil {
			t.Fatal(err)
		}
		out.orgs.Serve(orgStore{store})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, nil) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			_ = store.Close()
		})
		return r, ks, store
	}
	ra, _, a := start("scaler-0")
	_, kb, b := start("scaler-1")
	a.Record("acme")
	if err := ra.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := b.Get("acme"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("acme, recorded on scaler-0, not on scaler-1 within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var orgs []string
	if err := kb.Snapshot(false, func(m *pb.SnapshotResponse) error {
		for _, c := range m.GetChanges() {
			orgs = append(orgs, c.GetOrg())
		}
		return nil
	}); err != nil || len(orgs) != 1 || orgs[0] != "acme" {
		t.Fatalf("scaler-1's snapshot: %v, %v; want acme", orgs, err)
	}
}
