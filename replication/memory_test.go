package replication

import (
	"context"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/activity"
)

// Two replicas over a MemoryTopic, no Pub/Sub: activity recorded on one
// is on the other once Sync returns there and the message is applied, and
// a subscription taken away is made again (the replica is told it lost
// messages, so Join can heal it).
func TestTwoReplicasInMemory(t *testing.T) {
	topic := NewMemoryTopic(nil)
	key := KeyFrom("fleet-token")
	start := func(replica string) (*Replicator, *activity.Store) {
		r, err := New(context.Background(), Options{Topic: "projects/p/topics/replication", Replica: replica, Key: key,
			Transport: topic.Transport("projects/p/subscriptions/replication-" + replica)})
		if err != nil {
			t.Fatal(err)
		}
		store, err := activity.Open(activity.Options{Dir: t.TempDir(), IdleWindow: time.Hour, FlushInterval: time.Second, Replica: replica, OnChange: r.Enqueue})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, Sinks{Store: store, Known: store.Known}) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			_ = store.Close()
		})
		return r, store
	}
	ra, a := start("scaler-0")
	_, b := start("scaler-1")
	a.Record("acme")
	if err := ra.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := b.Get("acme"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("acme, recorded on scaler-0, not on scaler-1 within 10s")
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
