package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	"github.com/orgscaler/orgscaler/storage"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// kubeconfig names a cluster nobody answers at: New makes its clients
// without talking to it.
func kubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Whichever part fails, New closes every part it opened before: the same
// ports (KEDA's, the API's, metrics', the embedded Pub/Sub's) and the same
// data dir open again at once, and a second New on them succeeds.
func TestNewUndoesEveryPart(t *testing.T) {
	em := pubsubtest.Start(t)
	client := pubsubtest.Client(t, em.Addr, "p-new")
	ctx := context.Background()
	for _, topic := range []string{"projects/p-new/topics/replication", "projects/p-new/topics/events"} {
		if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
			t.Fatal(err)
		}
	}
	sub := "projects/p-new/subscriptions/activity"
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: "projects/p-new/topics/events"}); err != nil {
		t.Fatal(err)
	}
	o := Options{Listen: freeAddr(t), APIListen: freeAddr(t), MetricsListen: freeAddr(t), DataDir: t.TempDir(),
		PubSub: PubSubEmbedded, PubSubListen: freeAddr(t), ActivitySubscription: sub, Kubeconfig: kubeconfig(t),
		Replication: ReplicationPubSub, ReplicationTopic: "projects/p-new/topics/replication", ReplicaID: "r0", Peers: []string{"127.0.0.1:1"},
		Logger: slog.New(slog.DiscardHandler)}
	for _, p := range (&App{}).parts() {
		o.failAt = p.name
		if _, err := New(o); !errors.Is(err, errFailAt) {
			t.Fatalf("New failing at %s: %v", p.name, err)
		}
		for what, addr := range map[string]string{"KEDA": o.Listen, "API": o.APIListen, "metrics": o.MetricsListen, "embedded Pub/Sub": o.PubSubListen} {
			lis, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("after New failed at %s, the %s port %s is still open: %v", p.name, what, addr, err)
			}
			_ = lis.Close()
		}
		db, err := storage.Open(storage.Options{Dir: o.DataDir})
		if err != nil {
			t.Fatalf("after New failed at %s, the data dir is still held: %v", p.name, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	o.failAt = ""
	a, err := New(o)
	if err != nil {
		t.Fatalf("New after every failure: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
