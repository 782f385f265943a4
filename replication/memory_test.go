package replication

import (
	"context"
	"testing"
	"time"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Two replicas over a MemoryTopic, no Pub/Sub: an item enqueued on one
// is on the other once Sync returns there and the message is applied, and
// a subscription taken away is made again (the replica is told it lost
// messages, so Join can heal it).
func TestTwoReplicasInMemory(t *testing.T) {
	topic := NewMemoryTopic(nil)
	key := KeyFrom("fleet-token")
	start := func(replica string) (*Replicator, *Outbox[mark, *pb.OrgChange], *marks) {
		ks := NewKinds(nil, 0)
		r, err := New(context.Background(), Options{Topic: "projects/p/topics/replication", Replica: replica, Key: key,
			Transport: topic.Transport("projects/p/subscriptions/replication-" + replica), Kinds: ks})
		if err != nil {
			t.Fatal(err)
		}
		out, store := Register(ks, orgMarks()), &marks{}
		out.Serve(store)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, nil) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		return r, out, store
	}
	ra, a, _ := start("scaler-0")
	_, _, b := start("scaler-1")
	a.Enqueue(mark{"acme", 1})
	if err := ra.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := b.get("acme"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("acme, enqueued on scaler-0, not on scaler-1 within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	topic.DeleteSubscription("projects/p/subscriptions/replication-scaler-0")
	select {
	case <-ra.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("scaler-0 was not told its subscription was lost and made again")
	}
}
