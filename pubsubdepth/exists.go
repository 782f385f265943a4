package pubsubdepth

import (
	"context"
	"fmt"
	"sync"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// PubSubChecker looks subscriptions up with the Pub/Sub API (or the
// emulator named by PUBSUB_EMULATOR_HOST), one client per project.
type PubSubChecker struct {
	opts    []option.ClientOption
	mu      sync.Mutex
	clients map[string]*pubsub.Client
}

// NewPubSubChecker returns a checker whose clients are made with opts.
func NewPubSubChecker(opts ...option.ClientOption) *PubSubChecker {
	return &PubSubChecker{opts: opts, clients: map[string]*pubsub.Client{}}
}

// Exists implements Checker.
func (c *PubSubChecker) Exists(ctx context.Context, sub string) (bool, error) {
	project, _, err := ParseName(sub)
	if err != nil {
		return false, err
	}
	client, err := c.client(ctx, project)
	if err != nil {
		return false, err
	}
	_, err = client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: sub})
	switch status.Code(err) {
	case codes.OK:
		return true, nil
	case codes.NotFound:
		return false, nil
	default:
		return false, fmt.Errorf("look up %s: %w", sub, err)
	}
}

func (c *PubSubChecker) client(ctx context.Context, project string) (*pubsub.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[project]; ok {
		return cl, nil
	}
	cl, err := pubsub.NewClient(ctx, project, c.opts...)
	if err != nil {
		return nil, fmt.Errorf("pub/sub client for project %s: %w", project, err)
	}
	c.clients[project] = cl
	return cl, nil
}

// Close closes every client.
func (c *PubSubChecker) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for p, cl := range c.clients {
		if err := cl.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.clients, p)
	}
	return first
}
