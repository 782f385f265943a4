package pubsubdepth

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Embedded is an in-process Pub/Sub server for local work, reached by
// publishers and workers through PUBSUB_EMULATOR_HOST, whose backlog is read
// directly. Its acknowledgement counters are per topic, shared by all of a
// topic's subscriptions: the backlog is exact only for a topic with one
// subscription, created before the messages were published.
type Embedded struct {
	srv *pstest.Server
	now func() time.Time
}

// StartEmbedded serves an embedded Pub/Sub on addr (HOST:PORT).
func StartEmbedded(addr string, now func() time.Time) (e *Embedded, err error) {
	if now == nil {
		now = time.Now
	}
	defer func() {
		// pstest panics when it cannot listen.
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("embedded pub/sub on %s: %v", addr, r)
		}
	}()
	return &Embedded{srv: pstest.NewServerWithAddress(addr), now: now}, nil
}

// Addr is the address to put in PUBSUB_EMULATOR_HOST.
func (e *Embedded) Addr() string { return e.srv.Addr }

// Close stops the server.
func (e *Embedded) Close() error { return e.srv.Close() }

// Group implements Grouper: one read answers every subscription.
func (e *Embedded) Group(string) string { return "embedded" }

// Fetch implements Source: unacknowledged messages of each subscription's
// topic, observed now. A subscription that does not exist has no point.
func (e *Embedded) Fetch(ctx context.Context, subs []string) (map[string]Point, error) {
	for _, sub := range subs {
		if _, _, err := ParseName(sub); err != nil {
			return nil, err
		}
	}
	now := e.now()
	unacked := map[string]int64{}
	for _, m := range e.srv.Messages() {
		if m.Acks == 0 {
			unacked[m.Topic]++
		}
	}
	out := make(map[string]Point, len(subs))
	for _, sub := range subs {
		s, err := e.srv.GServer.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: sub})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("embedded pub/sub: subscription %s: %w", sub, err)
		}
		out[sub] = Point{Messages: unacked[s.GetTopic()], At: now}
	}
	return out, nil
}
