package app

import (
	"strings"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/tlsconfig"
)

// Embedders get the errors the command line gets, naming the flag, the
// value and what is expected; zero fields take their defaults.
func TestValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("the defaults must be valid: %v", err)
	}
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{IdleWindow: time.Millisecond}, "--idle-window is 1ms: expected at least 1s"},
		{Options{PubSub: "kafka"}, `--pubsub is "kafka": expected monitoring, embedded or none`},
		{Options{DepthMaxAge: time.Second, DepthRefresh: 2 * time.Second}, "--depth-max-age is 1s: expected at least --depth-refresh (2s)"},
		{Options{DepthEmptyAfter: 10 * time.Minute}, "--depth-empty-after is 10m0s: expected at least 1h"},
		{Options{DepthMaxAge: 2 * time.Hour}, "--depth-empty-after is 1h0m0s: expected at least 1h and at least --depth-max-age (2h0m0s)"},
		{Options{MaxOrgs: -1}, "--max-orgs is -1"},
		{Options{MaxStreamsPerConn: -2}, "--max-streams-per-conn is -2"},
		{Options{MonitoringInsecure: true}, "--monitoring-insecure needs --monitoring-endpoint"},
		{Options{Replication: ReplicationPubSub, ReplicationTopic: "projects/p/topics/t", ReplicaID: "r0"}, "--replication=pubsub needs --peers"},
		{Options{ReplicationWait: time.Hour}, "--replication-wait is 1h0m0s: expected 100ms to 5m"},
		{Options{APIMaxConnections: 1 << 40}, "--api-max-connections is 1099511627776: expected 1 to half"},
		{Options{MaxSubscriptions: -1}, "--max-subscriptions is -1"},
		{Options{APIIdleTimeout: time.Millisecond}, "--api-idle-timeout is 1ms"},
		{Options{Replication: ReplicationPubSub, ReplicationTopic: "projects/p/topics/t", ReplicaID: "r0", Peers: []string{"peers:9091"},
			APITLS: tlsconfig.Files{Cert: "c.pem", Key: "k.pem"}}, "--api-tls-cert serves the API over TLS, so the other replicas' APIs in --peers are too: give --peer-tls-ca"},
	} {
		err := c.o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want %q, got %v", c.o, c.want, err)
		}
		if _, nerr := New(c.o); nerr == nil || nerr.Error() != err.Error() {
			t.Errorf("New must refuse with the same error: %v", nerr)
		}
	}
}
