package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Activity published to a topic reaches the scaler through
// --activity-subscription on Google's Pub/Sub emulator: 100k messages over
// 10k orgs, none lost; a dormant org's stream gets true within 200 ms of
// its message being published; messages naming no valid org are
// acknowledged and counted by reason, not redelivered.
func TestActivityFromPubSub(t *testing.T) {
	addr := pubsubtest.StartEmulator(t)
	client := pubsubtest.Client(t, addr, "p-feed")
	ctx := context.Background()
	topic := "projects/p-feed/topics/events"
	sub := "projects/p-feed/subscriptions/orgscaler"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	o := options(t, t.TempDir())
	o.ActivitySubscription = sub
	d := start(t, o)
	pub := client.Publisher(topic)
	defer pub.Stop()
	pub.PublishSettings.CountThreshold = 1000

	const n, orgs = 100_000, 10_000
	var results []*pubsub.PublishResult
	for i := range n {
		m := &pubsub.Message{Attributes: map[string]string{"org": fmt.Sprintf("feed-%05d", i%orgs)}}
		if i%2 == 1 {
			m = &pubsub.Message{Data: fmt.Appendf(nil, `{"org":"feed-%05d","event":"job"}`, i%orgs)}
		}
		results = append(results, pub.Publish(ctx, m))
	}
	for _, bad := range []*pubsub.Message{{Data: []byte("not json")}, {Data: []byte(`{"user":"x"}`)}, {Attributes: map[string]string{"org": "no spaces allowed"}}} {
		results = append(results, pub.Publish(ctx, bad))
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	published := time.Now()
	recorded := regexp.MustCompile(`orgscaler_activity_feed_recorded_total (\d+)`)
	last := ""
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if m := recorded.FindStringSubmatch(scrape(t, d)); m != nil {
			last = m[1]
		}
		if last == fmt.Sprint(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s of %d messages recorded after 2 minutes", last, n)
		}
	}
	t.Logf("%d messages recorded %s after the last was published", n, time.Since(published).Round(time.Millisecond))
	metrics := scrape(t, d)
	for _, want := range []string{`orgscaler_activity_rejected_total{reason="bad-json"} 1`, `orgscaler_activity_rejected_total{reason="no-org"} 1`,
		`orgscaler_activity_rejected_total{reason="invalid-org"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	list, err := d.orgs.ListOrgs(ctx, &pb.ListOrgsRequest{PageSize: 1000, PageToken: ""})
	if err != nil || len(list.GetOrgs()) != 1000 {
		t.Fatalf("orgs: %d %v", len(list.GetOrgs()), err)
	}
	var all int
	for req := (&pb.ListOrgsRequest{PageSize: 1000}); ; {
		r, err := d.orgs.ListOrgs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		all += len(r.GetOrgs())
		if req.PageToken = r.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if all != orgs {
		t.Fatalf("%d orgs recorded from the feed; want %d", all, orgs)
	}

	// A dormant org woken by a message: its pynode's stream gets true.
	pushed := dormantStream(t, d, "sleepy", time.Now)
	sent := time.Now()
	if _, err := pub.Publish(ctx, &pubsub.Message{Attributes: map[string]string{"org": "sleepy"}}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-pushed:
		if took := at.Sub(sent); took > 200*time.Millisecond {
			t.Fatalf("true pushed %s after the message was published; want within 200ms", took)
		} else {
			t.Logf("a dormant org woken through Pub/Sub: true pushed %s after publishing", took.Round(time.Millisecond))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no push after the message")
	}
}

// A message published longer ago than the idle window (here: the
// scaler's clock two days ahead) is acknowledged and counted as stale,
// and wakes nobody.
func TestStaleActivityMessagesWakeNobody(t *testing.T) {
	addr := pubsubtest.StartEmulator(t)
	client := pubsubtest.Client(t, addr, "p-feed")
	ctx := context.Background()
	topic, sub := "projects/p-feed/topics/late", "projects/p-feed/subscriptions/late"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic}); err != nil {
		t.Fatal(err)
	}
	o := options(t, t.TempDir())
	o.ActivitySubscription, o.Now = sub, func() time.Time { return time.Now().Add(48 * time.Hour) }
	d := start(t, o)
	pub := client.Publisher(topic)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Attributes: map[string]string{"org": "late"}}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	poll(t, "the message counted as stale", func() bool {
		return strings.Contains(scrape(t, d), `orgscaler_activity_rejected_total{reason="stale"} 1`)
	})
	if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "late"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a stale message created its org: %v", err)
	}
}
