package app

import (
	"errors"
	"fmt"
	"time"
)

// Validate checks the options as New will use them (zero fields take
// their defaults), with errors that name the flag, the value and what is
// expected: cmd/scaler and embedders get the same ones.
func (o Options) Validate() error {
	o = withDefaults(o)
	switch {
	case o.IdleWindow < time.Second:
		return fmt.Errorf("--idle-window is %s: expected at least 1s", o.IdleWindow)
	case o.FlushInterval < 10*time.Millisecond:
		return fmt.Errorf("--flush-interval is %s: expected at least 10ms", o.FlushInterval)
	case o.PubSub != PubSubNone && o.PubSub != PubSubEmbedded && o.PubSub != PubSubMonitoring:
		return fmt.Errorf("--pubsub is %q: expected monitoring, embedded or none", o.PubSub)
	case o.DepthRefresh < 100*time.Millisecond:
		return fmt.Errorf("--depth-refresh is %s: expected at least 100ms", o.DepthRefresh)
	case o.DepthMaxAge < o.DepthRefresh:
		return fmt.Errorf("--depth-max-age is %s: expected at least --depth-refresh (%s)", o.DepthMaxAge, o.DepthRefresh)
	case o.DepthEmptyAfter < time.Hour || o.DepthEmptyAfter < o.DepthMaxAge:
		return fmt.Errorf("--depth-empty-after is %s: expected at least 1h and at least --depth-max-age (%s): a gap in Monitoring's points shorter than that is not an empty queue",
			o.DepthEmptyAfter, o.DepthMaxAge)
	case o.MaxOrgs < 1:
		return fmt.Errorf("--max-orgs is %d: expected at least 1", o.MaxOrgs)
	case o.UsageRetention < time.Hour:
		return fmt.Errorf("--usage-retention is %s: expected at least 1h (figures are kept per hour)", o.UsageRetention)
	case o.MonitoringInsecure && o.MonitoringEndpoint == "":
		return errors.New("--monitoring-insecure needs --monitoring-endpoint: it is for a local MetricService only")
	case o.Replication != ReplicationNone && o.Replication != ReplicationPubSub:
		return fmt.Errorf("--replication is %q: expected none or pubsub", o.Replication)
	case o.Replication == ReplicationPubSub && o.ReplicationTopic == "":
		return errors.New("--replication=pubsub needs --replication-topic projects/PROJECT/topics/TOPIC")
	case o.Replication == ReplicationPubSub && !validReplicaID(o.ReplicaID):
		return fmt.Errorf("--replica-id is %q: expected 1 to 63 letters, digits, '-', '_' or '.' (it names the replica's Pub/Sub subscription)", o.ReplicaID)
	case len(o.Peers) > 0 && o.Replication != ReplicationPubSub:
		return errors.New("--peers needs --replication=pubsub: peers share state only through the replication topic")
	case o.AntiEntropy < time.Second:
		return fmt.Errorf("--anti-entropy-interval is %s: expected at least 1s", o.AntiEntropy)
	case o.KEDAMaxConnectionAge < time.Second:
		return fmt.Errorf("--keda-max-connection-age is %s: expected at least 1s", o.KEDAMaxConnectionAge)
	case o.MaxStreamsPerConn < 1:
		return fmt.Errorf("--max-streams-per-conn is %d: expected at least 1", o.MaxStreamsPerConn)
	}
	if err := o.TLS.Check("--tls"); err != nil {
		return err
	}
	return o.APITLS.Check("--api-tls")
}

func validReplicaID(id string) bool {
	if len(id) == 0 || len(id) > 63 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
