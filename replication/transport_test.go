package replication

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
)

// fleetOn is two replicas' transports on one topic, and how to take a
// subscription away.
type fleetOn struct {
	a, b   Transport
	subB   string
	delete func(t testing.TB, sub string)
}

// The one contract every Transport keeps, run over each, as Litestream
// runs one replica-client test over every backend: Subscribe says whether
// it made the subscription; every subscription gets every message
// published after it was made, its own included, with its data,
// attributes and a publish time by the transport's clock; a message
// nacked comes back, one acked does not; a subscription taken away ends
// Receive with ErrSubscriptionGone, and Subscribe makes it again.
func TestTransportContract(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) fleetOn{
		"memory": func(*testing.T) fleetOn {
			topic := NewMemoryTopic(nil)
			return fleetOn{a: topic.Transport("a"), b: topic.Transport("b"), subB: "b",
				delete: func(_ testing.TB, sub string) { topic.DeleteSubscription(sub) }}
		},
		"pubsub": func(t *testing.T) fleetOn {
			em := pubsubtest.Start(t)
			topic := "projects/p-contract/topics/replication"
			if _, err := pubsubtest.Client(t, em.Addr, "p-contract").TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: topic}); err != nil {
				t.Fatal(err)
			}
			open := func(sub string) Transport {
				p, err := NewPubSub(context.Background(), topic, "projects/p-contract/subscriptions/"+sub, time.Hour, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = p.Close() })
				return p
			}
			return fleetOn{a: open("replica-a"), b: open("replica-b"), subB: "projects/p-contract/subscriptions/replica-b", delete: em.Delete}
		},
	} {
		t.Run(name, func(t *testing.T) { contract(t, open(t)) })
	}
}

// received collects what a Receive hands over, nacking the first
// delivery of nack.
type received struct {
	mu    sync.Mutex
	got   map[string][]*Message
	nack  string
	done  chan error
	count chan struct{}
}

func receive(t *testing.T, tr Transport, nack string) (*received, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &received{got: map[string][]*Message{}, nack: nack, done: make(chan error, 1), count: make(chan struct{}, 100)}
	go func() {
		r.done <- tr.Receive(ctx, func(m *Message) {
			r.mu.Lock()
			data := string(m.Data)
			r.got[data] = append(r.got[data], m)
			first := len(r.got[data]) == 1
			r.mu.Unlock()
			if first && data == r.nack {
				m.Nack()
			} else {
				m.Ack()
			}
			r.count <- struct{}{}
		})
	}()
	t.Cleanup(cancel)
	return r, cancel
}

// until waits, at most within, for cond over what was received.
func (r *received) until(t *testing.T, within time.Duration, what string, cond func(map[string][]*Message) bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		r.mu.Lock()
		ok := cond(r.got)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.count:
		case err := <-r.done:
			t.Fatalf("%s: Receive ended: %v", what, err)
		case <-deadline:
			t.Fatalf("%s: not within %s", what, within)
		}
	}
}

func contract(t *testing.T, f fleetOn) {
	ctx := context.Background()
	for _, tr := range []Transport{f.a, f.b} {
		if created, err := tr.Subscribe(ctx); err != nil || !created {
			t.Fatalf("first Subscribe: created %v, %v; want created", created, err)
		}
	}
	if created, err := f.a.Subscribe(ctx); err != nil || created {
		t.Fatalf("Subscribe again: created %v, %v; want the existing one", created, err)
	}
	ra, _ := receive(t, f.a, "")
	rb, stopB := receive(t, f.b, "two")
	before := time.Now()
	if err := f.a.Publish(ctx, []Outgoing{{Data: []byte("one"), Attributes: map[string]string{"k": "v"}}, {Data: []byte("two")}}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	both := func(got map[string][]*Message) bool { return len(got["one"]) > 0 && len(got["two"]) > 0 }
	ra.until(t, 30*time.Second, "the publisher's own subscription gets both", both)
	rb.until(t, 60*time.Second, "the other subscription gets both, the nacked one again", func(got map[string][]*Message) bool {
		return len(got["one"]) > 0 && len(got["two"]) >= 2
	})
	rb.mu.Lock()
	one := rb.got["one"][0]
	rb.mu.Unlock()
	if one.Attributes["k"] != "v" || one.PublishTime.Before(before.Add(-time.Second)) || one.PublishTime.After(after.Add(time.Second)) {
		t.Fatalf("message: attributes %v, published %s; want k=v, published between %s and %s", one.Attributes, one.PublishTime, before, after)
	}
	// What was acked does not come back: a later message arrives, alone.
	if err := f.a.Publish(ctx, []Outgoing{{Data: []byte("three")}}); err != nil {
		t.Fatal(err)
	}
	rb.until(t, 30*time.Second, "a later message", func(got map[string][]*Message) bool { return len(got["three"]) > 0 })
	rb.mu.Lock()
	if n, m := len(rb.got["one"]), len(rb.got["two"]); n != 1 || m != 2 {
		t.Errorf("deliveries: one %d, two %d; want acked once, nacked-then-acked twice", n, m)
	}
	rb.mu.Unlock()
	stopB()
	if err := <-rb.done; err != nil {
		t.Fatalf("Receive after its ctx ended: %v; want nil", err)
	}

	rb, _ = receive(t, f.b, "")
	f.delete(t, f.subB)
	select {
	case err := <-rb.done:
		if !errors.Is(err, ErrSubscriptionGone) {
			t.Fatalf("Receive on a deleted subscription: %v; want ErrSubscriptionGone", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Receive went on for a minute on a deleted subscription")
	}
	if created, err := f.b.Subscribe(ctx); err != nil || !created {
		t.Fatalf("Subscribe after the delete: created %v, %v; want made again", created, err)
	}
}
