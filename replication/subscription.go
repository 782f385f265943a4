package replication

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// ensureSubscription makes sure this replica's subscription exists, with
// an expiration policy (a dead replica's goes away) and a retry policy.
func (r *Replicator) ensureSubscription(ctx context.Context) error {
	existing, err := r.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: r.sub})
	if err == nil {
		r.log.Info("resuming the replication subscription", "subscription", r.sub)
		if existing.GetRetryPolicy() == nil {
			// Made by an older version: without a retry policy a nacked
			// message (a full disk) comes back at once, in a hot loop.
			_, err := r.client.SubscriptionAdminClient.UpdateSubscription(ctx, &pubsubpb.UpdateSubscriptionRequest{
				Subscription: &pubsubpb.Subscription{Name: r.sub, RetryPolicy: retryPolicy()},
				UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"retry_policy"}}})
			if err != nil {
				r.log.Warn("could not give the replication subscription a retry policy; a nacked message is redelivered at once", "subscription", r.sub, "err", err)
			}
		}
		return nil
	}
	if status.Code(err) != codes.NotFound {
		return fmt.Errorf("replication: look up subscription %s: %w", r.sub, err)
	}
	_, err = r.client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: r.sub, Topic: r.opts.Topic, AckDeadlineSeconds: 10, // the least: a crashed replica's messages come back soonest
		ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(r.opts.Expiry)},
		RetryPolicy:      retryPolicy(),
	})
	switch status.Code(err) {
	case codes.OK, codes.AlreadyExists: // AlreadyExists: made meanwhile by another call
		if err == nil {
			r.created.Store(true)
		}
		r.log.Info("created the replication subscription", "subscription", r.sub, "topic", r.opts.Topic, "expires_unused_after", r.opts.Expiry)
		return nil
	case codes.NotFound:
		return fmt.Errorf("replication: topic %s does not exist: create it first (gcloud pubsub topics create %s --project %s)",
			r.opts.Topic, r.opts.Topic[strings.LastIndexByte(r.opts.Topic, '/')+1:], strings.Split(r.opts.Topic, "/")[1])
	default:
		return fmt.Errorf("replication: create subscription %s: %w", r.sub, err)
	}
}

// retryPolicy spaces the redeliveries of a message this replica nacked
// (it could not apply it: a full disk) from 10 s to 10 min, Pub/Sub's
// defaults once a policy is set, instead of at once.
func retryPolicy() *pubsubpb.RetryPolicy {
	return &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(10 * time.Second), MaximumBackoff: durationpb.New(10 * time.Minute)}
}
