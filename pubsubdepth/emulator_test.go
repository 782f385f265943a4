package pubsubdepth

import (
	"context"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
)

// The subscription check against Google's emulator, reached through
// PUBSUB_EMULATOR_HOST as the Pub/Sub client does.
func TestCheckerAgainstEmulator(t *testing.T) {
	pubsubtest.StartEmulator(t)
	ctx := context.Background()
	c, err := pubsub.NewClient(ctx, "p-emulator")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topic, sub := "projects/p-emulator/topics/jobs", "projects/p-emulator/subscriptions/jobs"
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic}); err != nil {
		t.Fatal(err)
	}
	checker := NewPubSubChecker()
	defer checker.Close()
	if ok, err := checker.Exists(ctx, sub); err != nil || !ok {
		t.Fatalf("%s: want exists, got %v %v", sub, ok, err)
	}
	if ok, err := checker.Exists(ctx, "projects/p-emulator/subscriptions/nope"); err != nil || ok {
		t.Fatalf("want not found, got %v %v", ok, err)
	}
	if ok, err := checker.Exists(ctx, "projects/other-project/subscriptions/jobs"); err != nil || ok {
		t.Fatalf("another project: want not found, got %v %v", ok, err)
	}
}
