// Command pubsub-worker plays producer and GPU worker against a Pub/Sub
// emulator (the scaler's embedded one with `make run`), so the README's
// walkthrough can show a worker's target replicas rise and fall.
//
//	export PUBSUB_EMULATOR_HOST=127.0.0.1:8085
//	go run ./examples/pubsub-worker setup projects/demo-project/subscriptions/transcribe
//	go run ./examples/pubsub-worker publish projects/demo-project/subscriptions/transcribe 12
//	go run ./examples/pubsub-worker work projects/demo-project/subscriptions/transcribe 12
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

const usage = `usage (with PUBSUB_EMULATOR_HOST set):
  pubsub-worker setup   SUBSCRIPTION      create the subscription and its topic (same name under topics/)
  pubsub-worker publish SUBSCRIPTION N    publish N messages to its topic
  pubsub-worker work    SUBSCRIPTION N    receive and ack N messages, as a worker does`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pubsub-worker: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	if os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		return errors.New("PUBSUB_EMULATOR_HOST is not set: this demo talks to an emulator only (make run prints its address)")
	}
	sub := args[1]
	parts := strings.Split(sub, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "subscriptions" {
		return fmt.Errorf("SUBSCRIPTION is %q: expected projects/PROJECT/subscriptions/NAME", sub)
	}
	topic := "projects/" + parts[1] + "/topics/" + parts[3]
	ctx := context.Background()
	c, err := pubsub.NewClient(ctx, parts[1])
	if err != nil {
		return err
	}
	defer c.Close()
	n := 0
	if len(args) > 2 {
		if n, err = strconv.Atoi(args[2]); err != nil || n < 0 {
			return fmt.Errorf("the count is %q: expected a whole number", args[2])
		}
	}
	switch args[0] {
	case "setup":
		if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
			return fmt.Errorf("create %s: %w", topic, err)
		}
		if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic}); err != nil {
			return fmt.Errorf("create %s: %w", sub, err)
		}
		fmt.Printf("created %s and %s\n", topic, sub)
	case "publish":
		pub := c.Publisher(topic)
		defer pub.Stop()
		for i := range n {
			if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(fmt.Sprintf("job %d", i))}).Get(ctx); err != nil {
				return err
			}
		}
		fmt.Printf("published %d messages to %s\n", n, topic)
	case "work":
		var done atomic.Int64
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := c.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			if done.Add(1) >= int64(n) {
				cancel()
			}
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		fmt.Printf("acked %d messages from %s\n", done.Load(), sub)
	default:
		return errors.New(usage)
	}
	return nil
}
