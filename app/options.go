package app

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/tlsconfig"
	"github.com/orgscaler/orgscaler/trigger"
	"github.com/orgscaler/orgscaler/usage"
)

// Options is the whole configuration of the daemon.
type Options struct {
	Listen        string        // KEDA-facing gRPC address
	APIListen     string        // activity/admin gRPC address
	DataDir       string        // Badger directory
	IdleWindow    time.Duration // default idle window of an org
	FlushInterval time.Duration // how often coalesced activity is written
	Logger        *slog.Logger
	// Now is the clock; when nil, the process's clock.Clock, made of Wall
	// and Elapsed: the wall time at the start plus monotonic time since, so
	// a step of the system's wall clock moves no idle window, dormancy,
	// hint or backlog age.
	Now func() time.Time
	// Wall and Elapsed, when set (tests), stand for the system's wall clock
	// and the monotonic time since the start.
	Wall    func() time.Time
	Elapsed func() time.Duration
	// failAt, set by this package's tests, fails New at the part of that
	// name once it has opened, to show every part opened is closed again.
	failAt string
	// ShutdownGrace bounds how long a stop waits for RPCs in flight.
	ShutdownGrace time.Duration

	// PubSub is the backlog source: PubSubNone, PubSubEmbedded or
	// PubSubMonitoring.
	PubSub string
	// PubSubListen is where the embedded Pub/Sub listens.
	PubSubListen string
	// GCPProject, when set, is the project every Monitoring query goes to;
	// otherwise each subscription's own project.
	GCPProject         string
	MonitoringEndpoint string // HOST:PORT override of Cloud Monitoring
	MonitoringInsecure bool   // plaintext, no credentials: a local MetricService only
	DepthRefresh       time.Duration
	DepthMaxAge        time.Duration
	// DepthEmptyAfter is how far back Monitoring is asked for a point: an
	// existing subscription with none over it counts as empty; one whose
	// newest point is older than DepthMaxAge is blind.
	DepthEmptyAfter time.Duration

	// Kubeconfig, or InCluster, turns on Kubernetes Events on the
	// ScaledObjects the scaler serves.
	Kubeconfig string
	InCluster  bool
	// Knative keeps the min-scale of each Knative Service labelled
	// orgscaler.io/org at its org's warmth (needs a cluster).
	Knative bool

	// MetricsListen is where /metrics is served (Prometheus).
	MetricsListen string

	// TLS serves the KEDA port over TLS (mTLS with a client CA).
	TLS tlsconfig.Files
	// APITLS serves the API over TLS; with a client CA, client certificates
	// name their role in their subject's organization.
	APITLS tlsconfig.Files
	// APITokensFile holds the API's bearer tokens, one `TOKEN ROLE` a line.
	APITokensFile string
	// KEDAInsecure lets the KEDA port listen in plaintext (or TLS without
	// client certificates) on a non-loopback address.
	KEDAInsecure bool
	// MaxStreamsPerConn bounds the concurrent calls and streams of one
	// connection to the KEDA port.
	MaxStreamsPerConn int
	// KEDAMaxConnectionAge ends KEDA's connections (GOAWAY) after about
	// this long, and its streams cleanly, so its client re-resolves the
	// headless Service and spreads over the replicas there are now.
	KEDAMaxConnectionAge time.Duration
	// APIInsecure lets the API listen on a non-loopback address without
	// any authentication.
	APIInsecure bool
	// TokensReload is how often the tokens file is checked for changes.
	TokensReload time.Duration
	// UsageRetention is how long the hourly GPU-hours figures are kept.
	UsageRetention time.Duration
	// Replication is ReplicationNone (one replica, the default) or
	// ReplicationPubSub: every change is published to ReplicationTopic and
	// every replica applies every other's.
	Replication      string
	ReplicationTopic string // projects/P/topics/T
	// ActivitySubscription, when set (projects/P/subscriptions/S), is a
	// Pub/Sub subscription whose every message names an org with activity
	// (attribute "org", or a JSON body with "org").
	ActivitySubscription string
	// Peers are the other replicas' API ports (HOST:PORT, hosts resolved
	// to all their addresses): a replica that starts empty loads a
	// snapshot from one before it is ready.
	Peers []string
	// PeerTokenFile holds the bearer token presented to peers' APIs.
	PeerTokenFile string
	// PeerTLSCA, when set, dials peers' APIs over TLS, trusting this CA
	// bundle; needed when the API is served over TLS.
	PeerTLSCA string
	// AntiEntropy is how often a replica compares its digest with a random
	// peer's and applies that peer's snapshot when they differ.
	AntiEntropy time.Duration
	// APIMaxConnections caps the API port's open connections (0: a quarter
	// of the file-descriptor limit, at most DefaultAPIMaxConnections); more
	// than half the limit is refused.
	APIMaxConnections int
	// APIIdleTimeout closes an API connection with no call in flight.
	APIIdleTimeout time.Duration
	// MaxClockSkew bounds how far ahead of this replica's clock another's
	// stamps may be before they are held to it.
	MaxClockSkew time.Duration
	// ReplicationWait bounds how long an API call or a feed message waits
	// for its change to reach the replication topic: the change is in
	// force here at once; past the bound the caller hears Unavailable (the
	// feed nacks), safe to retry.
	ReplicationWait time.Duration
	// ReplicaID names this replica (default: the hostname, a StatefulSet's
	// pod name) in the stamps of its changes and in Digest.
	ReplicaID string
	// LeaseName and LeaseNamespace name the Lease through which, with
	// replication and a cluster, one replica leads the fleet: it alone
	// records Events and counts the GPU-hours ledger. The namespace
	// defaults to the pod's.
	LeaseName      string
	LeaseNamespace string
	// MaxOrgs caps the orgs activity and triggers may create.
	MaxOrgs int
	// UnseenOrgs is what an org a trigger names before any activity,
	// import or admin change counts as: UnseenActive (the default: warm
	// for its idle window from the first poll) or UnseenDormant (at zero
	// until its first activity).
	UnseenOrgs string
	// MaxSubscriptions caps the subscriptions whose backlog is tracked.
	MaxSubscriptions int
	// MinFreeDiskMB is the free space, in MiB, below which nothing is
	// written to the data dir; 0 uses the default, negative turns it off.
	MinFreeDiskMB int
}

// Replication modes.
const (
	ReplicationNone   = "none"
	ReplicationPubSub = "pubsub"
)

// What an org a trigger names first counts as (--unseen-orgs).
const (
	UnseenActive  = "active"
	UnseenDormant = "dormant"
)

// Backlog sources.
const (
	PubSubNone       = "none"
	PubSubEmbedded   = "embedded"
	PubSubMonitoring = "monitoring"
)

// Defaults used by cmd/scaler and by New for zero fields.
const (
	DefaultListen          = "127.0.0.1:9090"
	DefaultAPIListen       = "127.0.0.1:9091"
	DefaultDataDir         = "./data"
	DefaultIdleWindow      = 24 * time.Hour
	DefaultFlushInterval   = 10 * time.Second
	DefaultShutdownGrace   = 10 * time.Second
	DefaultPubSubListen    = "127.0.0.1:8085"
	DefaultMetricsListen   = "127.0.0.1:9092"
	DefaultDepthRefresh    = 15 * time.Second
	DefaultDepthMaxAge     = 5 * time.Minute
	DefaultDepthEmptyAfter = time.Hour
	DefaultTokensReload    = 5 * time.Second
	DefaultMaxOrgs         = 1_000_000
	DefaultMinFreeDiskMB   = 64
	// DefaultMaxStreamsPerConn is far above what one KEDA operator opens
	// (a StreamIsActive per external-push trigger it watches), and a bound
	// on what one connection can make the scaler hold.
	DefaultMaxStreamsPerConn = 10_000
	// DefaultKEDAMaxConnectionAge lets KEDA find a new replica within
	// minutes, at the cost of one reconnect per stream per interval.
	DefaultKEDAMaxConnectionAge = 5 * time.Minute
	// DefaultAntiEntropy is the safety net's period: rare enough that a
	// full snapshot pull under load costs little.
	DefaultAntiEntropy = 5 * time.Minute
	// DefaultAPIMaxConnections is the most the API port holds by default:
	// producers and operators need a few connections each.
	DefaultAPIMaxConnections = 4096
	// DefaultAPIIdleTimeout closes idle API connections after about as long
	// as load balancers keep theirs.
	DefaultAPIIdleTimeout = 2 * time.Minute
	// DefaultReplicationWait is replication.DefaultWait.
	DefaultReplicationWait = replication.DefaultWait
	// DefaultLeaseName is the fleet leader's Lease.
	DefaultLeaseName = "orgscaler-leader"
)

// MaxMessageSize bounds every message either port receives: KEDA's
// requests and our API's are a few hundred bytes, so anything near it is a
// mistake or an attack, refused with ResourceExhausted before it is read.
const MaxMessageSize = 1 << 20

func withDefaults(o Options) Options {
	o.Listen = cmp.Or(o.Listen, DefaultListen)
	o.APIListen = cmp.Or(o.APIListen, DefaultAPIListen)
	o.MetricsListen = cmp.Or(o.MetricsListen, DefaultMetricsListen)
	o.DataDir = cmp.Or(o.DataDir, DefaultDataDir)
	o.IdleWindow = cmp.Or(o.IdleWindow, DefaultIdleWindow)
	o.FlushInterval = cmp.Or(o.FlushInterval, DefaultFlushInterval)
	o.ShutdownGrace = cmp.Or(o.ShutdownGrace, DefaultShutdownGrace)
	o.PubSub = cmp.Or(o.PubSub, PubSubNone)
	o.Replication = cmp.Or(o.Replication, ReplicationNone)
	o.PubSubListen = cmp.Or(o.PubSubListen, DefaultPubSubListen)
	o.DepthRefresh = cmp.Or(o.DepthRefresh, DefaultDepthRefresh)
	o.DepthMaxAge = cmp.Or(o.DepthMaxAge, DefaultDepthMaxAge)
	o.DepthEmptyAfter = cmp.Or(o.DepthEmptyAfter, DefaultDepthEmptyAfter)
	o.TokensReload = cmp.Or(o.TokensReload, DefaultTokensReload)
	o.UsageRetention = cmp.Or(o.UsageRetention, usage.DefaultRetention)
	o.MaxOrgs = cmp.Or(o.MaxOrgs, DefaultMaxOrgs)
	o.UnseenOrgs = cmp.Or(o.UnseenOrgs, UnseenActive)
	o.MaxSubscriptions = cmp.Or(o.MaxSubscriptions, pubsubdepth.DefaultMaxSubscriptions)
	o.MinFreeDiskMB = cmp.Or(o.MinFreeDiskMB, DefaultMinFreeDiskMB)
	o.MaxStreamsPerConn = cmp.Or(o.MaxStreamsPerConn, DefaultMaxStreamsPerConn)
	o.KEDAMaxConnectionAge = cmp.Or(o.KEDAMaxConnectionAge, DefaultKEDAMaxConnectionAge)
	o.AntiEntropy = cmp.Or(o.AntiEntropy, DefaultAntiEntropy)
	o.ReplicationWait = cmp.Or(o.ReplicationWait, DefaultReplicationWait)
	o.MaxClockSkew = cmp.Or(o.MaxClockSkew, replication.DefaultMaxClockSkew)
	o.APIIdleTimeout = cmp.Or(o.APIIdleTimeout, DefaultAPIIdleTimeout)
	o.LeaseName = cmp.Or(o.LeaseName, DefaultLeaseName)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReplicaID == "" {
		o.ReplicaID, _ = os.Hostname()
	}
	if o.Now == nil {
		o.Now = time.Now // Validate's; New makes the process's clock first
	}
	return o
}

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
	case o.UnseenOrgs != UnseenActive && o.UnseenOrgs != UnseenDormant:
		return fmt.Errorf("--unseen-orgs is %q: expected active or dormant", o.UnseenOrgs)
	case o.MaxSubscriptions < 1:
		return fmt.Errorf("--max-subscriptions is %d: expected at least 1", o.MaxSubscriptions)
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
	case o.Replication == ReplicationPubSub && len(o.Peers) == 0:
		return errors.New("--replication=pubsub needs --peers HOST:PORT,... (in a cluster, the headless Service listing every replica's API port, this one's included): without peers a replica that starts empty never loads the others' state, a restarted one never resends what it had not published, and nothing heals what the log missed")
	case len(o.Peers) > 0 && o.Replication != ReplicationPubSub:
		return errors.New("--peers needs --replication=pubsub: peers share state only through the replication topic")
	case o.Replication == ReplicationPubSub && len(o.Peers) > 0 && o.APITLS.Cert != "" && o.PeerTLSCA == "":
		return errors.New("--api-tls-cert serves the API over TLS, so the other replicas' APIs in --peers are too: give --peer-tls-ca, the CA bundle that signed their certificates")
	case o.ActivitySubscription != "" && !trigger.ValidSubscription(o.ActivitySubscription):
		return fmt.Errorf("--activity-subscription is %q: expected projects/PROJECT/subscriptions/SUBSCRIPTION", o.ActivitySubscription)
	case o.AntiEntropy < time.Second:
		return fmt.Errorf("--anti-entropy-interval is %s: expected at least 1s", o.AntiEntropy)
	case o.MaxClockSkew < time.Second || o.MaxClockSkew > time.Hour:
		return fmt.Errorf("--max-clock-skew is %s: expected 1s to 1h", o.MaxClockSkew)
	case o.ReplicationWait < 100*time.Millisecond || o.ReplicationWait > 5*time.Minute:
		return fmt.Errorf("--replication-wait is %s: expected 100ms to 5m", o.ReplicationWait)
	case o.KEDAMaxConnectionAge < time.Second:
		return fmt.Errorf("--keda-max-connection-age is %s: expected at least 1s", o.KEDAMaxConnectionAge)
	case o.MaxStreamsPerConn < 1:
		return fmt.Errorf("--max-streams-per-conn is %d: expected at least 1", o.MaxStreamsPerConn)
	case o.Knative && o.Kubeconfig == "" && !o.InCluster:
		return errors.New("--knative needs a cluster: give --kubeconfig or --in-cluster")
	}
	if o.APIIdleTimeout < time.Second {
		return fmt.Errorf("--api-idle-timeout is %s: expected at least 1s", o.APIIdleTimeout)
	}
	if _, err := apiConnLimit(o.APIMaxConnections); err != nil {
		return err
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
