// Package replication keeps several scaler replicas' stores equal over
// one Pub/Sub topic: every change a replica accepts is published to the
// topic before its caller is told it is done, and every replica applies
// every other replica's changes from a subscription of its own. What it
// carries is a list of kinds (kind.go), each registered with how its
// items coalesce, cross the wire and merge (package replicated registers
// the stores'); merges are commutative and idempotent, so Pub/Sub's
// redelivery and lack of order change nothing. Neither this package nor
// the stores know one another: a store reports its changes and merges
// the others'.
package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Hints is where other replicas' enqueue hints go; pubsubdepth.Tracker
// provides it. Nil without a backlog source.
type Hints interface {
	ApplyHint(id, sub string, n int64, at time.Time)
}

// Options configure a Replicator.
type Options struct {
	// Topic is the replication topic, projects/P/topics/T. It must exist.
	Topic string
	// Replica is this replica's id; its subscription is T-Replica.
	Replica string
	Logger  *slog.Logger
	// Registerer, when set, gets the replicator's metrics.
	Registerer prometheus.Registerer
	// ClientOptions dial Pub/Sub (none: Application Default Credentials,
	// or PUBSUB_EMULATOR_HOST).
	ClientOptions []option.ClientOption
	// Expiry is how long a subscription nobody reads lives (default and
	// minimum on the service: 24h), so a dead replica's goes away.
	Expiry time.Duration
	// Now is the process's clock (default time.Now).
	Now func() time.Time
	// Wait bounds how long Sync waits (default DefaultWait).
	Wait time.Duration
	// MaxSkew bounds how far ahead of this replica's clock another's
	// stamps may be before they are held to it (validate.go; default
	// DefaultMaxClockSkew). OnSkew, when set, is called with true when
	// this replica's clock is off from Pub/Sub's by more than MaxSkew, and
	// with false when it is back within half of it.
	MaxSkew time.Duration
	OnSkew  func(skewed bool)
	// Key, when set (KeyFrom the fleet's peer token), signs every message
	// published and refuses every message received without a valid
	// signature.
	Key []byte
	// Transport, when set, carries the messages instead of Pub/Sub (a
	// MemoryTopic's, in tests); Topic still names the subscription.
	Transport Transport
	// Kinds are what the replicator publishes and applies (register each
	// before Run). Nil: a registry of its own, on Now and MaxSkew.
	Kinds *Kinds
}

// Replicator publishes this replica's changes and applies the others'.
type Replicator struct {
	opts Options
	log  *slog.Logger
	tr   Transport
	sub  string
	m    *metrics

	mu        sync.Mutex
	ks        *Kinds
	hints     hintQueue
	hintSeq   uint64
	enqueued  uint64        // changes enqueued so far
	confirmed uint64        // changes published so far
	published chan struct{} // closed and replaced at each confirmation
	lastErr   error         // the last publish failure, while failing
	// waitingSince is when the queue last went from empty to not;
	// lastPublish when a publish last succeeded: stalledFor reads them.
	waitingSince, lastPublish time.Time
	kick                      chan struct{}
	lost                      chan struct{} // the subscription was gone and is made again: Join heals
	created                   atomic.Bool   // New made the subscription: what was published before is not in it
	instance                  string        // this process: see twin.go
	started                   time.Time
	now                       func() time.Time
	warnTwin                  sync.Once
	firstOwn                  atomic.Int64 // Pub/Sub's publish time of this process's first message received back
	offsets                   *offsets
	skewMu                    sync.Mutex
	skewed                    bool
	warnBad                   rate.Sometimes
}

// New dials Pub/Sub and makes sure this replica's subscription exists
// (created if missing, with an expiration policy). Run starts the work.
func New(ctx context.Context, o Options) (*Replicator, error) {
	project, topicID, err := parseTopic(o.Topic)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Expiry <= 0 {
		o.Expiry = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Wait <= 0 {
		o.Wait = DefaultWait
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = DefaultMaxClockSkew
	}
	log := o.Logger.With("component", "replication")
	sub := fmt.Sprintf("projects/%s/subscriptions/%s-%s", project, topicID, o.Replica)
	tr := o.Transport
	if tr == nil {
		if tr, err = NewPubSub(ctx, o.Topic, sub, o.Expiry, log, o.ClientOptions...); err != nil {
			return nil, err
		}
	}
	if o.Kinds == nil {
		o.Kinds = NewKinds(o.Now, o.MaxSkew)
	}
	r := &Replicator{opts: o, log: log, tr: tr, sub: sub, ks: o.Kinds,
		hints: hintQueue{}, published: make(chan struct{}), kick: make(chan struct{}, 1), lost: make(chan struct{}, 1),
		instance: newInstance(), started: o.Now(), now: o.Now, warnBad: rate.Sometimes{Interval: 10 * time.Second},
		hintSeq: uint64(time.Now().UnixNano()), // unique across this replica's restarts
		m:       newMetrics(o.Registerer), offsets: newOffsets(o.Registerer)}
	if err := r.ensureSubscription(ctx); err != nil {
		_ = tr.Close()
		return nil, err
	}
	r.ks.queue = r.queue
	if o.Registerer != nil {
		r.registerPending(o.Registerer)
	}
	return r, nil
}

func parseTopic(topic string) (project, id string, err error) {
	parts := strings.Split(topic, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "topics" || parts[1] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("--replication-topic is %q: expected projects/PROJECT/topics/TOPIC", topic)
	}
	return parts[1], parts[3], nil
}

// Subscription is this replica's subscription.
func (r *Replicator) Subscription() string { return r.sub }

// wake tells the publisher something was queued.
func (r *Replicator) wake() { signal(r.kick) }

// queue adds to what waits to be published (add runs under the lock),
// counts it for Sync, and wakes the publisher.
func (r *Replicator) queue(add func()) {
	r.mu.Lock()
	if !r.queued() {
		r.waitingSince = r.now()
	}
	add()
	r.enqueued++
	r.mu.Unlock()
	r.wake()
}

// EnqueueHint queues an enqueue hint accepted here, for every replica to
// count once.
func (r *Replicator) EnqueueHint(sub string, n int64, at time.Time) {
	r.queue(func() {
		r.hintSeq++
		r.hints.add(&pb.SubscriptionHint{Id: fmt.Sprintf("%s/%d", r.opts.Replica, r.hintSeq),
			Subscription: sub, Messages: n, AtUnixNano: at.UnixNano()})
	})
}

// Sync returns once every change enqueued before it is published, or an
// error saying why not yet (the change stays queued and is published
// when Pub/Sub is back). It waits at most Options.Wait whatever ctx says,
// so no caller (one with no deadline, a feed message holding flow
// control) is held by a Pub/Sub outage.
func (r *Replicator) Sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Wait)
	defer cancel()
	r.mu.Lock()
	target := r.enqueued
	for r.confirmed < target {
		wait, lastErr := r.published, r.lastErr
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("not yet published to %s: %w", r.opts.Topic, lastErr)
			}
			return fmt.Errorf("not yet published to %s: %w", r.opts.Topic, ctx.Err())
		}
		r.mu.Lock()
	}
	r.mu.Unlock()
	return nil
}

// Run publishes and applies (every registered kind to its store, hints
// to hints, if set) until ctx ends, then publishes what is still queued (for up to
// DrainTimeout) and closes the client.
// A *TwinError (another live process with this replica's id started
// first) ends it too, after the drain.
func (r *Replicator) Run(ctx context.Context, hints Hints) error {
	if name := r.ks.unserved(); name != "" {
		return fmt.Errorf("replication: kind %q has no store (Outbox.Serve)", name)
	}
	for _, k := range r.ks.list {
		r.m.published.WithLabelValues(k.name())
		r.m.applied.WithLabelValues(k.name())
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.publishLoop(ctx) })
	wg.Go(func() { r.heartbeat(ctx) })
	err := r.receive(ctx, hints)
	cancel()
	wg.Wait()
	r.drain()
	return errors.Join(err, r.Close())
}

// drain publishes what is still queued, within DrainTimeout, and logs
// what it could not.
func (r *Replicator) drain() {
	dctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	defer cancel()
	for {
		seq, batch := r.take()
		if batch.empty() {
			return
		}
		if err := r.publish(dctx, batch); err != nil {
			r.requeue(batch, err)
			r.mu.Lock()
			left := r.takeLocked(math.MaxInt)
			r.mu.Unlock()
			r.log.Error("changes not published before stopping: other replicas will not see them until this replica restarts and republishes, or anti-entropy heals them",
				append(left.counts(), "err", err)...)
			return
		}
		r.confirm(seq)
	}
}

// DefaultWait is how long Sync waits for a change to be published: far
// above a healthy publish (tens of milliseconds), far below a client's
// patience.
const DefaultWait = 10 * time.Second

// DrainTimeout bounds how long a stop waits to publish what is queued.
const DrainTimeout = 5 * time.Second

// Close stops publishing and closes the transport (Run does it on its way
// out; call it only when Run never ran). Publishes still in flight after
// DrainTimeout (Pub/Sub hangs) are abandoned, so a stop never waits on the
// network longer than that.
func (r *Replicator) Close() error { return r.tr.Close() }

// ensureSubscription makes sure this replica's subscription exists, and
// notes when it had to be made (what was published before is not in it).
func (r *Replicator) ensureSubscription(ctx context.Context) error {
	created, err := r.tr.Subscribe(ctx)
	if created {
		r.created.Store(true)
	}
	return err
}

// publishTimeout bounds one publish: past it the batch is queued again.
const publishTimeout = 30 * time.Second

func (r *Replicator) publishLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		for {
			seq, batch := r.take()
			if batch.empty() {
				break
			}
			err := r.publish(ctx, batch)
			if err == nil {
				r.confirm(seq)
				backoff = 100 * time.Millisecond
				continue
			}
			if status.Code(err) == codes.InvalidArgument {
				// Pub/Sub will never take it: retrying would wedge the queue
				// behind it. Anti-entropy heals the orgs it carried.
				r.log.Error("Pub/Sub refused a batch of changes as invalid; dropped", append(batch.counts(), "topic", r.opts.Topic, "err", err)...)
				r.m.publishErrors.Inc()
				r.confirm(seq)
				continue
			}
			r.requeue(batch, err)
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("publishing changes failed; retrying", append(batch.counts(), "topic", r.opts.Topic, "retry_in", backoff, "err", err)...)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}
}

// take removes up to maxTake items from the queue, and says how many
// changes were enqueued up to it when it empties the queue (0 when some
// remain, so Sync waits for the publish that takes the last of them).
func (r *Replicator) take() (uint64, pending) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.takeLocked(maxTake)
	if r.queued() {
		return 0, p
	}
	return r.enqueued, p
}

func (r *Replicator) requeue(p pending, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
	r.m.publishErrors.Inc()
	r.putBackLocked(p)
}

func (r *Replicator) confirm(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq > r.confirmed {
		r.confirmed = seq
	}
	r.lastPublish = r.now()
	r.lastErr = nil
	close(r.published)
	r.published = make(chan struct{})
}

// publish sends p (messages sized by pending.messages) and waits, at most
// publishTimeout, for Pub/Sub to confirm them all.
func (r *Replicator) publish(ctx context.Context, p pending) error {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	var msgs []Outgoing
	for _, msg := range p.messages(r.opts.Replica) {
		data, err := proto.Marshal(msg)
		if err != nil {
			return fmt.Errorf("encode changes: %w", err)
		}
		msgs = append(msgs, Outgoing{Data: data, Attributes: r.sign(data, r.attributes())})
	}
	if err := r.tr.Publish(pctx, msgs); err != nil {
		return err
	}
	for _, b := range p.batches {
		r.m.published.WithLabelValues(b.name()).Add(float64(b.len()))
	}
	return nil
}
