package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// PubSub is the Transport on a Google Cloud Pub/Sub topic.
type PubSub struct {
	topic, sub string
	expiry     time.Duration
	log        *slog.Logger
	client     *pubsub.Client
	pub        *pubsub.Publisher
}

// NewPubSub dials Pub/Sub for topic (projects/P/topics/T), with sub as
// this replica's subscription, which expires unused after expiry.
func NewPubSub(ctx context.Context, topic, sub string, expiry time.Duration, log *slog.Logger, opts ...option.ClientOption) (*PubSub, error) {
	project, _, err := parseTopic(topic)
	if err != nil {
		return nil, err
	}
	client, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("replication: pub/sub client for project %s: %w", project, err)
	}
	p := &PubSub{topic: topic, sub: sub, expiry: expiry, log: log, client: client, pub: client.Publisher(topic)}
	p.pub.PublishSettings.DelayThreshold = time.Millisecond
	// The client's own bound on a publish RPC (60 s by default) is what a
	// stop waits for; Replicator.publish gives up on a batch after
	// publishTimeout.
	p.pub.PublishSettings.Timeout = publishTimeout
	return p, nil
}

// Subscribe makes sure the subscription exists, with an expiration
// policy (a dead replica's goes away) and a retry policy.
func (p *PubSub) Subscribe(ctx context.Context) (created bool, err error) {
	existing, err := p.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: p.sub})
	if err == nil {
		p.log.Info("resuming the replication subscription", "subscription", p.sub)
		if existing.GetRetryPolicy() == nil {
			// Made by an older version: without a retry policy a nacked
			// message (a full disk) comes back at once, in a hot loop.
			_, err := p.client.SubscriptionAdminClient.UpdateSubscription(ctx, &pubsubpb.UpdateSubscriptionRequest{
				Subscription: &pubsubpb.Subscription{Name: p.sub, RetryPolicy: retryPolicy()},
				UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"retry_policy"}}})
			if err != nil {
				p.log.Warn("could not give the replication subscription a retry policy; a nacked message is redelivered at once", "subscription", p.sub, "err", err)
			}
		}
		return false, nil
	}
	if status.Code(err) != codes.NotFound {
		return false, fmt.Errorf("replication: look up subscription %s: %w", p.sub, err)
	}
	_, err = p.client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: p.sub, Topic: p.topic, AckDeadlineSeconds: 10, // the least: a crashed replica's messages come back soonest
		ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(p.expiry)},
		RetryPolicy:      retryPolicy(),
	})
	switch status.Code(err) {
	case codes.OK, codes.AlreadyExists: // AlreadyExists: made meanwhile by another call
		p.log.Info("created the replication subscription", "subscription", p.sub, "topic", p.topic, "expires_unused_after", p.expiry)
		return err == nil, nil
	case codes.NotFound:
		return false, fmt.Errorf("replication: topic %s does not exist: create it first (gcloud pubsub topics create %s --project %s)",
			p.topic, p.topic[strings.LastIndexByte(p.topic, '/')+1:], strings.Split(p.topic, "/")[1])
	default:
		return false, fmt.Errorf("replication: create subscription %s: %w", p.sub, err)
	}
}

// retryPolicy spaces the redeliveries of a message this replica nacked
// (it could not apply it: a full disk) from 10 s to 10 min, Pub/Sub's
// defaults once a policy is set, instead of at once.
func retryPolicy() *pubsubpb.RetryPolicy {
	return &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(10 * time.Second), MaximumBackoff: durationpb.New(10 * time.Minute)}
}

// Publish publishes msgs and waits for Pub/Sub to confirm them all.
func (p *PubSub) Publish(ctx context.Context, msgs []Outgoing) error {
	results := make([]*pubsub.PublishResult, len(msgs))
	for i, m := range msgs {
		results[i] = p.pub.Publish(ctx, &pubsub.Message{Data: m.Data, Attributes: m.Attributes})
	}
	var errs []error
	for _, res := range results {
		if _, err := res.Get(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Receive pulls the subscription, one message at a time.
func (p *PubSub) Receive(ctx context.Context, handle func(*Message)) error {
	sub := p.client.Subscriber(p.sub)
	sub.ReceiveSettings.NumGoroutines = 1
	err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		handle(&Message{ID: m.ID, Data: m.Data, Attributes: m.Attributes, PublishTime: m.PublishTime, ack: func(ok bool) {
			if ok {
				m.Ack()
			} else {
				m.Nack()
			}
		}})
	})
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%w: %s: %w", ErrSubscriptionGone, p.sub, err)
	}
	return err
}

// Close stops publishing and closes the client. Publishes still in flight
// after DrainTimeout (Pub/Sub hangs) are abandoned: closing the client
// fails them, so a stop never waits on the network longer than that.
func (p *PubSub) Close() error {
	stopped := make(chan struct{})
	go func() { p.pub.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(DrainTimeout):
		p.log.Warn("Pub/Sub did not confirm publishes in flight when stopping; abandoned", "topic", p.topic, "waited", DrainTimeout)
	}
	return p.client.Close()
}
