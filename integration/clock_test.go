package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/clocktest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// The system's wall clock stepped an hour either way moves nothing the
// scaler measures: an org used 60 minutes ago with a 90-minute window
// stays warm for KEDA across a step forward, and goes idle only when 90
// minutes have really passed; a hint stays in force; after a step back,
// new activity still moves the org's last activity on. Each step is
// counted in orgscaler_clock_steps_total.
func TestClockSteps(t *testing.T) {
	sys := clocktest.NewSystem(time.Now().Round(0))
	o := options(t, t.TempDir())
	o.Wall, o.Elapsed = sys.Wall, sys.Elapsed
	o.PubSub, o.PubSubListen = app.PubSubEmbedded, "127.0.0.1:0"
	d := start(t, o)
	ctx := context.Background()
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", IdleWindow: durationOf(90 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	first, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	sub := "projects/p-clock/subscriptions/jobs"
	sys.Advance(60 * time.Minute)
	if _, err := d.act.Hint(ctx, &pb.HintRequest{Subscription: sub, Messages: 3}); err != nil {
		t.Fatal(err)
	}

	sys.Step(time.Hour)
	poll(t, "the step forward counted", func() bool {
		return strings.Contains(scrape(t, d), `orgscaler_clock_steps_total{direction="forward"} 1`)
	})
	if active, _ := answer(t, d, pynode("acme")); !active {
		t.Fatal("after 60 of its 90 minutes and a 1h step forward, KEDA was told acme's pynode is idle")
	}
	if o, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"}); err != nil || o.GetOrg().GetState() == pb.Org_STATE_DORMANT {
		t.Fatalf("acme after a 1h step forward: %v %v; want active", o.GetOrg().GetState(), err)
	}
	b, err := d.orgs.ListBacklogs(ctx, &pb.ListBacklogsRequest{})
	if err != nil || len(b.GetBacklogs()) != 1 || b.GetBacklogs()[0].GetHintMessages() != 3 {
		t.Fatalf("the hint after a 1h step forward: %v %v; want 3 messages hinted, in force", b, err)
	}

	sys.Advance(31 * time.Minute)
	if active, _ := answer(t, d, pynode("acme")); active {
		t.Fatal("91 minutes after acme's last activity, KEDA was told its pynode with a 90-minute window is active")
	}

	sys.Step(-2 * time.Hour)
	poll(t, "the step back counted", func() bool {
		return strings.Contains(scrape(t, d), `orgscaler_clock_steps_total{direction="backward"} 1`)
	})
	again, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.GetOrg().GetLastActivity().AsTime().Sub(first.GetOrg().GetLastActivity().AsTime()); got != 91*time.Minute {
		t.Fatalf("activity after a 2h step back moved acme's last activity by %s; want the 91m that passed", got)
	}
	if active, _ := answer(t, d, pynode("acme")); !active {
		t.Fatal("acme, used again after a step back, is idle for KEDA")
	}
}
