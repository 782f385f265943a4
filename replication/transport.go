package replication

import (
	"context"
	"errors"
	"time"
)

// Transport carries the replicas' messages: one topic every replica
// publishes to, and one subscription per replica that gets every message
// published after it was made (its own included), at least once. PubSub
// is the one a fleet runs on; MemoryTopic runs a fleet in one process.
// Both pass one contract test (transport_test.go).
type Transport interface {
	// Subscribe makes sure this replica's subscription exists. created
	// says it did not: what was published before is not in it.
	Subscribe(ctx context.Context) (created bool, err error)
	// Publish sends msgs, and returns once the transport holds them all
	// (or ctx ends, or it refuses them).
	Publish(ctx context.Context, msgs []Outgoing) error
	// Receive calls handle for each message until ctx ends (nil) or
	// receiving fails: ErrSubscriptionGone when the subscription no longer
	// exists. handle may be called concurrently (Pub/Sub's client does),
	// and acknowledges each message, or not to have it again.
	Receive(ctx context.Context, handle func(*Message)) error
	// Close releases the transport; publishes it has not confirmed within
	// DrainTimeout are abandoned.
	Close() error
}

// Outgoing is a message to publish.
type Outgoing struct {
	Data       []byte
	Attributes map[string]string
}

// Message is a message received.
type Message struct {
	ID         string // the transport's, for logs
	Data       []byte
	Attributes map[string]string
	// PublishTime is when the transport took the message, by its own
	// clock: what twin detection and the clock offsets measure against.
	PublishTime time.Time
	ack         func(ok bool)
}

// Ack says the message is applied: it is not delivered again.
func (m *Message) Ack() { m.ack(true) }

// Nack says it could not be applied: it is delivered again later.
func (m *Message) Nack() { m.ack(false) }

// ErrSubscriptionGone is a subscription deleted or expired under a
// receiving replica: what was published meanwhile never reaches it.
var ErrSubscriptionGone = errors.New("the subscription does not exist")
