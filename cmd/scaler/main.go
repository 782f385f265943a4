// Command scaler is the tenant-aware KEDA external scaler: it answers KEDA
// for every worker, pynode and model from org activity kept in Badger.
package main

import (
	// Zone data inside the binary: the image has none, and warm schedules
	// name IANA zones.
	_ "time/tzdata"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	// CA roots, used when the system has none (the image has none).
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/flagenv"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/replication"
	"github.com/orgscaler/orgscaler/usage"
	"github.com/orgscaler/orgscaler/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	app       app.Options
	logFormat string
	logLevel  slog.Level
	version   bool
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err == nil && cfg.version {
		fmt.Fprintf(stdout, "scaler %s\n", version.Get())
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "scaler: %v\n", err)
		return 2
	}
	cfg.app.Logger = newLogger(cfg.logFormat, cfg.logLevel, stderr)
	// client-go (informers, leader election, Events) logs through klog:
	// in the same format, with the same level.
	klog.SetSlogLogger(cfg.app.Logger.With("component", "client-go"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal is the operator insisting: it ends the process
		// at once, as if no handler were installed.
		<-ctx.Done()
		stop()
	}()
	a, err := app.New(cfg.app)
	if err != nil {
		cfg.app.Logger.Error("cannot start", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		cfg.app.Logger.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

// envPrefix names each flag's environment variable: --api-listen is
// SCALER_API_LISTEN. A flag on the command line wins over its variable.
const envPrefix = "SCALER"

// groups are the headings of --help, in order.
var groups = []string{"Ports", "Orgs and activity", "Backlog (Pub/Sub)", "Cluster", "KEDA port security", "API security", "Replication", "Logs"}

func parse(args []string, out io.Writer) (config, error) {
	var c config
	fs := flags(&c, out)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.version {
		return c, nil // nothing else is read or checked
	}
	if err := flagenv.Apply(fs, envPrefix); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: scaler takes only flags (see --help)", fs.Arg(0))
	}
	return c, c.validate()
}

// flags is every flag of the scaler, bound to c, grouped for --help.
func flags(c *config, out io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("scaler", pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	fs.StringVar(&c.app.Listen, "listen", app.DefaultListen, "address of the gRPC port KEDA calls (ExternalScaler service)")
	fs.StringVar(&c.app.APIListen, "api-listen", app.DefaultAPIListen, "address of the activity and admin gRPC API (scalerctl talks to it)")
	fs.StringVar(&c.app.MetricsListen, "metrics-listen", app.DefaultMetricsListen, "address of the Prometheus endpoint (/metrics)")
	fs.StringVar(&c.app.DataDir, "data-dir", app.DefaultDataDir, "directory of the Badger database holding every org")
	fs.DurationVar(&c.app.IdleWindow, "idle-window", app.DefaultIdleWindow, "how long an org stays active after its last activity, unless the org has its own window")
	fs.DurationVar(&c.app.FlushInterval, "flush-interval", app.DefaultFlushInterval, "how often coalesced activity is written to disk: at most one write per org per interval; a crash loses at most this much of an org's last activity")
	fs.StringVar(&c.app.PubSub, "pubsub", app.PubSubNone, "backlog source for workers and models with a subscription: monitoring (Cloud Monitoring, production), embedded (an in-process Pub/Sub for local work, served on --pubsub-listen) or none")
	fs.StringVar(&c.app.PubSubListen, "pubsub-listen", app.DefaultPubSubListen, "address of the embedded Pub/Sub (--pubsub=embedded); publishers and workers reach it with PUBSUB_EMULATOR_HOST set to it")
	fs.StringVar(&c.app.GCPProject, "gcp-project", "", "project whose Cloud Monitoring metrics scope every backlog query goes to (default: the project in each subscription name, one query per project)")
	fs.StringVar(&c.app.MonitoringEndpoint, "monitoring-endpoint", "", "HOST:PORT of the Cloud Monitoring API, to override Google's (tests, private endpoints)")
	fs.BoolVar(&c.app.MonitoringInsecure, "monitoring-insecure", false, "dial --monitoring-endpoint in plaintext without credentials: for a local MetricService only")
	fs.DurationVar(&c.app.DepthRefresh, "depth-refresh", app.DefaultDepthRefresh, "how often the backlog of every tracked subscription is fetched, in the background")
	fs.DurationVar(&c.app.DepthMaxAge, "depth-max-age", app.DefaultDepthMaxAge, "how long a backlog point is trusted; past it GetMetrics answers Unavailable (so KEDA's fallback engages) and IsActive keeps its last answer")
	fs.DurationVar(&c.app.DepthEmptyAfter, "depth-empty-after", app.DefaultDepthEmptyAfter, "how far back Cloud Monitoring is asked for a subscription's newest point (at least 1h): only an existing subscription with no point at all over it counts as empty; a newest point older than --depth-max-age is blind, never empty")
	fs.IntVar(&c.app.MaxSubscriptions, "max-subscriptions", pubsubdepth.DefaultMaxSubscriptions, "most subscriptions whose backlog is tracked at once (each is a share of every Monitoring query); past it, a trigger or a hint naming a new one gets ResourceExhausted naming this flag")
	fs.StringVar(&c.app.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster whose ScaledObjects and ScaledJobs the scaler serves: it answers only their triggers (NotFound for anything else) and records Events on them (org woke, went dormant, answer changed); off when empty")
	fs.BoolVar(&c.app.InCluster, "in-cluster", false, "the same as --kubeconfig, with the pod's service account (in a cluster)")
	fs.BoolVar(&c.app.Knative, "knative", false, "keep each Knative Service labelled orgscaler.io/org=ORG at its org's warmth: the min-scale annotation of its latest ready Revision is 1 (or the label orgscaler.io/warm-min-scale) while the org is warm and 0 while it is dormant (needs --kubeconfig or --in-cluster, and RBAC on Knative's services and revisions)")
	fs.StringVar(&c.app.TLS.Cert, "tls-cert", "", "PEM certificate (chain) of the KEDA port: serve it over TLS; re-read when the file changes")
	fs.StringVar(&c.app.TLS.Key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.app.TLS.ClientCA, "tls-client-ca", "", "PEM CA bundle: the KEDA port then requires client certificates signed by it (mTLS; KEDA's TriggerAuthentication tlsClientCert/tlsClientKey)")
	fs.StringVar(&c.app.APITLS.Cert, "api-tls-cert", "", "PEM certificate (chain) of the API port: serve it over TLS; re-read when the file changes")
	fs.StringVar(&c.app.APITLS.Key, "api-tls-key", "", "PEM private key of --api-tls-cert")
	fs.StringVar(&c.app.APITLS.ClientCA, "api-tls-client-ca", "", "PEM CA bundle for API client certificates; a certificate's role is its subject's organization: O=producer or O=admin")
	fs.StringVar(&c.app.APITokensFile, "api-tokens-file", "", "file of API bearer tokens, one `TOKEN ROLE` a line (roles: producer sends activity and hints; admin also reads and changes orgs); re-read when it changes")
	fs.BoolVar(&c.app.KEDAInsecure, "keda-insecure", false, "let the KEDA port listen in plaintext on a non-loopback address without --tls-client-ca (it otherwise refuses to: anyone who reaches it could steer the answers); for a port fenced by a NetworkPolicy")
	fs.DurationVar(&c.app.KEDAMaxConnectionAge, "keda-max-connection-age", app.DefaultKEDAMaxConnectionAge, "end each KEDA connection after about this long (streams end cleanly first), so KEDA's client re-resolves the scaler's address and spreads over the replicas there are now")
	fs.IntVar(&c.app.MaxStreamsPerConn, "max-streams-per-conn", app.DefaultMaxStreamsPerConn, "most concurrent calls and streams one connection to the KEDA port may hold open (KEDA opens one StreamIsActive per external-push trigger over one shared connection)")
	fs.BoolVar(&c.app.APIInsecure, "api-insecure", false, "let the API listen on a non-loopback address with no authentication (without tokens or client certificates it otherwise refuses to)")
	fs.StringVar(&c.app.ActivitySubscription, "activity-subscription", "", "a Pub/Sub subscription, projects/PROJECT/subscriptions/SUBSCRIPTION, whose every message is activity of the org it names (attribute org, or a JSON body with \"org\"); acknowledged once recorded (and replicated); messages naming no valid org are acknowledged and counted in orgscaler_activity_rejected_total. Reached with Application Default Credentials, PUBSUB_EMULATOR_HOST, or the embedded Pub/Sub with --pubsub=embedded")
	fs.StringVar(&c.app.Replication, "replication", app.ReplicationNone, "none (one replica) or pubsub: every change is published to --replication-topic before it is acknowledged, and every replica applies every other's from its own subscription (TOPIC-REPLICA_ID, created if missing)")
	fs.StringVar(&c.app.ReplicationTopic, "replication-topic", "", "the replication topic, projects/PROJECT/topics/TOPIC (it must exist); Pub/Sub is reached with Application Default Credentials or PUBSUB_EMULATOR_HOST")
	fs.Func("peers", "required with --replication=pubsub: the replicas' API ports, HOST:PORT[,HOST:PORT...]; each host is resolved to all its addresses, so the headless Service's name lists every replica: a replica that starts with an empty data dir loads a snapshot from one before it is ready (none found: it is the first of the fleet), as does one whose subscription was lost; anti-entropy compares digests with them", func(v string) error {
		c.app.Peers = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.app.Peers = append(c.app.Peers, p)
			}
		}
		return nil
	})
	fs.IntVar(&c.app.APIMaxConnections, "api-max-connections", 0, "the most connections the API port holds open at once; more wait in the kernel's accept queue, so however many connections strangers open to the API, KEDA's port keeps working (0: a quarter of the file-descriptor limit, at most 4096; more than half the limit is refused)")
	fs.DurationVar(&c.app.APIIdleTimeout, "api-idle-timeout", app.DefaultAPIIdleTimeout, "close an API connection (HTTP keep-alive, or HTTP/2 and gRPC with no call in flight) after this long idle; clients redial")
	fs.DurationVar(&c.app.MaxClockSkew, "max-clock-skew", replication.DefaultMaxClockSkew, "with replication: the furthest ahead of this replica's clock another replica's stamps (activity, settings, deletes, hints) may be; further ones are held to it and counted in orgscaler_replication_stamps_held_total, so a fast clock cannot keep orgs warm or freeze settings everywhere; a replica whose own clock is off by more than this from Pub/Sub's and from its peers' (measured from the replication messages' publish times) is NOT_SERVING until it is back")
	fs.DurationVar(&c.app.ReplicationWait, "replication-wait", app.DefaultReplicationWait, "the longest an activity call, a hint, an org change or a --activity-subscription message waits for its change to be published to the other replicas; the change is in force on this replica at once, and past this the caller hears Unavailable (\"accepted here, not yet replicated; safe to retry\") and the message is nacked, so a Pub/Sub outage never holds a producer or its activity")
	fs.DurationVar(&c.app.AntiEntropy, "anti-entropy-interval", app.DefaultAntiEntropy, "how often a replica compares its digest with a random peer's, and applies that peer's snapshot when they differ (heals what the log did not carry, such as messages held for a crashed replica)")
	fs.StringVar(&c.app.LeaseName, "leader-elect-lease", app.DefaultLeaseName, "with --replication and a cluster: the Lease through which one replica leads the fleet, recording Events and counting the GPU-hours ledger once for all")
	fs.StringVar(&c.app.LeaseNamespace, "leader-elect-namespace", "", "namespace of --leader-elect-lease (default: the pod's, from $POD_NAMESPACE or its service account)")
	fs.StringVar(&c.app.PeerTokenFile, "peer-token-file", "", "file holding the bearer token (an admin token of --api-tokens-file) presented to peers' APIs for snapshots")
	fs.StringVar(&c.app.PeerTLSCA, "peer-tls-ca", "", "PEM CA bundle that signed the other replicas' API certificates: peers are dialled over TLS, checking each --peers entry's host name (needed with --api-tls-cert)")
	fs.StringVar(&c.app.ReplicaID, "replica-id", "", "this replica's name, in the stamps of its admin changes and in `scalerctl digest` (default: the hostname, which in a StatefulSet is the pod's name)")
	fs.IntVar(&c.app.MaxOrgs, "max-orgs", app.DefaultMaxOrgs, "most orgs activity and KEDA's triggers may create; past it, activity or a trigger naming a new org gets ResourceExhausted naming this flag (orgs an admin change or scalerctl org import names are always created)")
	fs.StringVar(&c.app.UnseenOrgs, "unseen-orgs", app.UnseenActive, "what an org counts as when a KEDA trigger names it before any activity, import or admin change has: active (warm for its idle window from the first poll, so a new deployment never drops to zero before anyone used it) or dormant (at zero until its first activity: for teams that create triggers before scalerctl org import, so orgs dormant for months do not all run for a day)")
	fs.IntVar(&c.app.MinFreeDiskMB, "min-free-disk-mb", app.DefaultMinFreeDiskMB, "free space (MiB) the data dir's filesystem must keep: below it nothing is written (a full disk would crash Badger), answers go on from memory, admin changes get Unavailable; -1 turns the check off")
	fs.DurationVar(&c.app.UsageRetention, "usage-retention", usage.DefaultRetention, "how long the hourly GPU-hours figures behind scalerctl report are kept")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.BoolVar(&c.version, "version", false, "print the scaler's version, VCS revision and Go version, and exit")
	flagenv.Group(fs, "Ports", "listen", "api-listen", "metrics-listen")
	flagenv.Group(fs, "Orgs and activity", "data-dir", "idle-window", "flush-interval", "activity-subscription", "max-orgs", "unseen-orgs", "min-free-disk-mb", "usage-retention")
	flagenv.Group(fs, "Backlog (Pub/Sub)", "pubsub", "pubsub-listen", "gcp-project", "monitoring-endpoint", "monitoring-insecure", "depth-refresh", "depth-max-age", "depth-empty-after", "max-subscriptions")
	flagenv.Group(fs, "Cluster", "kubeconfig", "in-cluster", "knative", "leader-elect-lease", "leader-elect-namespace")
	flagenv.Group(fs, "KEDA port security", "tls-cert", "tls-key", "tls-client-ca", "keda-insecure", "keda-max-connection-age", "max-streams-per-conn")
	flagenv.Group(fs, "API security", "api-tls-cert", "api-tls-key", "api-tls-client-ca", "api-tokens-file", "api-insecure", "api-max-connections", "api-idle-timeout")
	flagenv.Group(fs, "Replication", "replication", "replication-topic", "peers", "anti-entropy-interval", "replication-wait", "max-clock-skew", "peer-token-file", "peer-tls-ca", "replica-id")
	flagenv.Group(fs, "Logs", "log-format", "log-level", "version")
	flagenv.NoEnv(fs, "version") // a variable left in a pod's environment must not turn the scaler into a version print
	fs.Usage = func() {
		fmt.Fprintf(out, `Usage: scaler [flags]

A tenant-aware KEDA external scaler. KEDA calls --listen for every trigger
of type external or external-push; producers report org activity, and
operators read and change orgs, on --api-listen (see scalerctl).

Every flag can also be set from the environment variable shown; a flag on
the command line wins.
`)
		flagenv.Usage(out, fs, envPrefix, groups)
	}
	return fs
}

func (c config) validate() error {
	if c.logFormat != "text" && c.logFormat != "json" {
		return fmt.Errorf("--log-format is %q: expected text or json", c.logFormat)
	}
	if c.app.DataDir == "" {
		return errors.New("--data-dir is empty: expected a directory")
	}
	return c.app.Validate()
}

func newLogger(format string, level slog.Level, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
