// Package feed records activity from a Pub/Sub subscription, for teams
// that already publish every job or event: each message names an org (its
// attribute "org", or a JSON body {"org": "..."}), and is acknowledged
// only once the activity is recorded (in the store's memory, on disk
// within a flush interval, as an activity call is) and, with replication,
// published to the other replicas. A message that names no valid org, or
// was published longer ago than MaxAge, is acknowledged and counted, never
// retried.
package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/orgid"
	"github.com/orgscaler/orgscaler/pubsubdepth"
	"github.com/orgscaler/orgscaler/trigger"
)

// Recorder records activity; activity.Store provides it.
type Recorder interface {
	RecordFor(org string, why activity.WakeReason) (activity.Org, bool, error)
}

// Options configure a Feed.
type Options struct {
	// Subscription is projects/P/subscriptions/S. It must exist.
	Subscription string
	Recorder     Recorder
	// Sync, when set, returns once the activity recorded so far is
	// published to the other replicas, or after a bound of its own
	// (replication.Replicator.Sync): a message is never held longer, so
	// flow control never holds every message behind it.
	Sync       func(context.Context) error
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// ClientOptions dial Pub/Sub (none: Application Default Credentials,
	// or PUBSUB_EMULATOR_HOST).
	ClientOptions []option.ClientOption
	// MaxAge, when set, is the oldest a message may be (by its publish
	// time) and still count: activity recorded now for a message from a
	// backlog hours old would wake an org nobody has used since.
	MaxAge time.Duration
	// Now is the clock MaxAge is measured on; time.Now when nil.
	Now func() time.Time
	// MaxOutstanding bounds the messages held unacknowledged (default
	// 10000): the flow control that keeps a backlog from filling memory.
	MaxOutstanding int
}

// Feed receives activity from one subscription.
type Feed struct {
	opts    Options
	log     *slog.Logger
	client  *pubsub.Client
	metrics *metrics
	warn    rate.Sometimes
	warnRep rate.Sometimes
	closed  sync.Once
	// unsent counts messages nacked because the feed stopped before their
	// activity was replicated: told once, when it stops.
	unsent atomic.Int64
}

// Rejection reasons, the label of orgscaler_activity_rejected_total.
const (
	ReasonNoOrg      = "no-org"      // neither an org attribute nor a JSON body with one
	ReasonBadJSON    = "bad-json"    // no org attribute, and a body that is not a JSON object
	ReasonInvalidOrg = "invalid-org" // an org that is not a valid org id
	ReasonOrgLimit   = "org-limit"   // a new org past --max-orgs
	ReasonStale      = "stale"       // published longer ago than MaxAge (the idle window)
)

// New dials Pub/Sub and checks the subscription exists, so a typo fails
// the start with a clear error instead of a silent feed.
func New(ctx context.Context, o Options) (*Feed, error) {
	project, _, err := pubsubdepth.ParseName(o.Subscription)
	if err != nil || !trigger.ValidSubscription(o.Subscription) {
		return nil, fmt.Errorf("--activity-subscription is %q: expected projects/PROJECT/subscriptions/SUBSCRIPTION", o.Subscription)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxOutstanding <= 0 {
		o.MaxOutstanding = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	client, err := pubsub.NewClient(ctx, project, o.ClientOptions...)
	if err != nil {
		return nil, fmt.Errorf("activity feed: pub/sub client for project %s: %w", project, err)
	}
	_, err = client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: o.Subscription})
	if err != nil {
		_ = client.Close()
		if status.Code(err) == codes.NotFound {
			return nil, fmt.Errorf("--activity-subscription %s does not exist: create it on the topic your producers publish to (gcloud pubsub subscriptions create)", o.Subscription)
		}
		return nil, fmt.Errorf("activity feed: look up subscription %s: %w", o.Subscription, err)
	}
	return &Feed{opts: o, log: o.Logger.With("component", "feed", "subscription", o.Subscription), client: client,
		metrics: newMetrics(o.Registerer), warn: rate.Sometimes{Interval: 10 * time.Second}, warnRep: rate.Sometimes{Interval: 10 * time.Second}}, nil
}

// Run receives until ctx ends, resuming after errors, then closes the
// client.
func (f *Feed) Run(ctx context.Context) error {
	defer f.Close()
	sub := f.client.Subscriber(f.opts.Subscription)
	sub.ReceiveSettings.MaxOutstandingMessages = f.opts.MaxOutstanding
	// Eight pull streams: one carries a few thousand messages a second.
	sub.ReceiveSettings.NumGoroutines = 8
	f.log.Info("recording activity from a Pub/Sub subscription")
	for {
		err := sub.Receive(ctx, f.handle)
		if ctx.Err() != nil {
			if n := f.unsent.Load(); n > 0 {
				f.log.Warn("activity recorded here but not yet replicated when the feed stopped; its messages were nacked and Pub/Sub will redeliver them", "messages", n)
			}
			return nil
		}
		f.log.Error("receiving activity stopped; resuming", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// Close closes the client (Run does it on its way out; call it only when
// Run never ran).
func (f *Feed) Close() error {
	var err error
	f.closed.Do(func() { err = f.client.Close() })
	return err
}

// handle records one message's activity, then acknowledges it.
func (f *Feed) handle(ctx context.Context, m *pubsub.Message) {
	org, reason := OrgOf(m.Attributes, m.Data)
	if reason == "" && f.opts.MaxAge > 0 && !m.PublishTime.IsZero() && f.opts.Now().Sub(m.PublishTime) > f.opts.MaxAge {
		reason = ReasonStale
	}
	if reason == "" {
		_, _, err := f.opts.Recorder.RecordFor(org, activity.WakeActivity)
		var limit *activity.LimitError
		switch {
		case errors.As(err, &limit):
			reason = ReasonOrgLimit
		case err != nil:
			f.log.Error("activity not recorded; Pub/Sub will redeliver it", "org", org, "err", err)
			m.Nack()
			return
		}
	}
	if reason != "" {
		f.metrics.rejected.WithLabelValues(reason).Inc()
		f.warn.Do(func() {
			f.log.Warn("activity message rejected and acknowledged (logged at most every 10s; orgscaler_activity_rejected_total counts them all)",
				"reason", reason, "message_id", m.ID, "org", trigger.Clip(org))
		})
		m.Ack()
		return
	}
	if f.opts.Sync != nil && !f.replicated(ctx, org) {
		m.Nack()
		return
	}
	f.metrics.recorded.Inc()
	m.Ack()
}

// replicated waits, within Sync's bound, for the activity recorded so far
// to be published to the other replicas, and says whether it was.
func (f *Feed) replicated(ctx context.Context, org string) bool {
	err := f.opts.Sync(ctx)
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		f.unsent.Add(1)
	default:
		f.metrics.unreplicated.Inc()
		f.warnRep.Do(func() {
			f.log.Warn("activity recorded here but not yet replicated; its message is nacked and Pub/Sub will redeliver it (logged at most every 10s; orgscaler_activity_feed_unreplicated_total counts them all)",
				"org", org, "err", err)
		})
	}
	return false
}

// OrgOf is the org a message names: its "org" attribute, else the "org"
// of a JSON object body; reason says why there is none.
func OrgOf(attrs map[string]string, body []byte) (org, reason string) {
	org, ok := attrs["org"]
	if !ok {
		var b struct {
			Org *string `json:"org"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			if len(body) == 0 {
				return "", ReasonNoOrg
			}
			return "", ReasonBadJSON
		}
		if b.Org == nil {
			return "", ReasonNoOrg
		}
		org = *b.Org
	}
	if !orgid.Valid(org) {
		return org, ReasonInvalidOrg
	}
	return org, ""
}

type metrics struct {
	recorded     prometheus.Counter
	unreplicated prometheus.Counter
	rejected     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_activity_feed_recorded_total",
			Help: "Activity messages from --activity-subscription recorded (and, with replication, published) and acknowledged."}),
		unreplicated: prometheus.NewCounter(prometheus.CounterOpts{Name: "orgscaler_activity_feed_unreplicated_total",
			Help: "Activity messages from --activity-subscription recorded here but nacked because their activity was not published to the other replicas within --replication-wait."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orgscaler_activity_rejected_total",
			Help: "Activity messages acknowledged without recording, by reason: no-org, bad-json, invalid-org, org-limit, stale."}, []string{"reason"}),
	}
	for _, r := range []string{ReasonNoOrg, ReasonBadJSON, ReasonInvalidOrg, ReasonOrgLimit, ReasonStale} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.recorded, m.unreplicated, m.rejected)
	}
	return m
}
