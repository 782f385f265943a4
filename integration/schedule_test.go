package integration

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// A dormant org whose warm schedule begins is woken at the window's start
// by the scaler itself: its pynode's stream gets true then, org get shows
// it, and explain says why. The scaler's clock runs at real speed, shifted
// to just before 09:00 UTC, so real timers meet the schedule's edge.
func TestWarmScheduleWakesAtItsStart(t *testing.T) {
	var shift atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	at := func(target time.Time) { shift.Store(int64(time.Until(target))) }
	nine := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC) // a Tuesday
	at(nine.Add(-time.Hour))
	o := options(t, t.TempDir())
	o.Now = clock
	d := start(t, o)
	ctx := context.Background()
	pushed := dormantStream(t, d, "acme", clock)

	at(nine.Add(-300 * time.Millisecond))
	out, err := d.ctl(t, "org", "set", "acme", "--warm-schedule", "mon-fri 09:00-18:00 UTC")
	if err != nil || !strings.Contains(out, "Mon,Tue,Wed,Thu,Fri 09:00-18:00 UTC") {
		t.Fatalf("org set --warm-schedule: %v\n%s", err, out)
	}
	select {
	case got := <-pushed:
		if late := got.Sub(nine); late < 0 || late > 200*time.Millisecond {
			t.Fatalf("true pushed %s after the window's start; want within 200ms after it", late)
		}
		t.Logf("the schedule's start pushed true %s after 09:00", got.Sub(nine).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("no push at the schedule's start")
	}
	// The store's own timer wakes the org at the same instant as the
	// stream's: either may come first.
	poll(t, "acme active until 18:00", func() bool {
		g, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"})
		return err == nil && g.GetOrg().GetState() == pb.Org_STATE_ACTIVE && g.GetOrg().GetDormantAt().AsTime().Equal(nine.Add(9*time.Hour))
	})
	e, err := d.orgs.Explain(ctx, &pb.ExplainRequest{ScaledObject: "orgs/pynode-acme"})
	if err != nil || e.GetRule() != "schedule" || !strings.Contains(e.GetReason(), "inside its warm schedule") {
		t.Fatalf("explain: %v %v", e, err)
	}
	if _, err := d.ctl(t, "org", "set", "acme", "--warm-schedule", "Mon 9-10 UTC"); err == nil || !strings.Contains(err.Error(), `time "9"`) {
		t.Fatalf("a bad schedule: %v; want an error naming what is wrong", err)
	}
}

// dormantStream makes org dormant (a 1 s idle window), opens its pynode's
// StreamIsActive, and once the stream is open returns when each true was
// pushed, by now.
func dormantStream(t *testing.T, d *daemon, org string, now func() time.Time) <-chan time.Time {
	t.Helper()
	ctx := context.Background()
	if _, err := d.ctl(t, "org", "set", org, "--idle-window", "1s"); err != nil {
		t.Fatal(err)
	}
	poll(t, org+" dormant", func() bool {
		g, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: org})
		return err == nil && g.GetOrg().GetState() == pb.Org_STATE_DORMANT
	})
	stream, err := d.keda.StreamIsActive(ctx, pynode(org))
	if err != nil {
		t.Fatal(err)
	}
	pushed := trues(stream, now)
	poll(t, "the stream is open", func() bool { return strings.Contains(scrape(t, d), "orgscaler_open_streams 1") })
	return pushed
}
