// Package pubsubtest gives tests a Pub/Sub client on an emulator or the
// embedded Pub/Sub, and subscriptions to scale on.
package pubsubtest

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Client dials the Pub/Sub at addr in plaintext, closed when the test ends.
func Client(t testing.TB, addr, project string) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), project, option.WithEndpoint(addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Topic is the topic named like sub: projects/P/topics/S.
func Topic(sub string) string { return strings.Replace(sub, "/subscriptions/", "/topics/", 1) }

// Create makes sub (projects/P/subscriptions/S) and its topic, Topic(sub).
func Create(t testing.TB, c *pubsub.Client, sub string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: Topic(sub)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: Topic(sub)}); err != nil {
		t.Fatal(err)
	}
}
