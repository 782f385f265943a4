package replication

import (
	"cmp"
	"context"
	"errors"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// receive applies other replicas' changes from this replica's
// subscription, acknowledging each message once it is on disk here. It
// returns a *TwinError when another live process uses this replica's id.
func (r *Replicator) receive(ctx context.Context, hints Hints) error {
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var twin atomic.Pointer[TwinError] // handle may run concurrently
	for {
		err := r.tr.Receive(rctx, func(m *Message) {
			if t := r.handle(m, hints); t != nil {
				twin.CompareAndSwap(nil, t)
				stop()
			}
		})
		if t := twin.Load(); t != nil {
			return t
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrSubscriptionGone) {
			// Deleted, or expired while this replica was away: what was
			// published meanwhile never reaches it. Recreate it, then Join
			// heals the gap from a peer's snapshot before serving again.
			r.log.Error("this replica's subscription is gone: recreating it, and not ready until a peer's snapshot fills the gap", "subscription", r.sub)
			if err = r.ensureSubscription(ctx); err == nil {
				signal(r.lost)
				continue
			}
		}
		r.log.Error("receiving replication messages stopped; resuming", "subscription", r.sub, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// handle checks, measures and applies one message, and acknowledges it
// (or not, to have it again); a *TwinError says the message is a live
// twin's.
func (r *Replicator) handle(m *Message, hints Hints) *TwinError {
	if !r.authentic(m) {
		r.reject(m, "unauthenticated", "no valid signature: published by something without the fleet's peer token")
		return nil
	}
	var b pb.ChangeBatch
	if err := proto.Unmarshal(m.Data, &b); err != nil {
		r.reject(m, "undecodable", err.Error())
		return nil
	}
	own := m.Attributes[attrInstance] == r.instance
	if own && !m.PublishTime.IsZero() {
		r.firstOwn.CompareAndSwap(0, m.PublishTime.UnixNano())
	}
	if own || b.GetReplica() != r.opts.Replica { // not a twin's
		if _, ok := r.offsets.observe(b.GetReplica(), m, r.now()); ok {
			r.skew()
		}
	}
	if b.GetReplica() == r.opts.Replica {
		if t := r.twin(m); t != nil {
			m.Nack() // the twin's, for the process that keeps the id
			return t
		}
		m.Ack() // ours: applied when it was made
		return nil
	}
	a, err := r.ks.apply(carrier{batch: &b}, nil, r.countApplied)
	switch {
	case errors.Is(err, errEarly):
		r.log.Debug("a message came before the org it counts for; Pub/Sub will redeliver it", "from", b.GetReplica(), "err", err)
		m.Nack()
		return nil
	case err != nil:
		r.log.Error("applying another replica's changes failed; Pub/Sub will redeliver them", "from", b.GetReplica(), "err", err)
		m.Nack()
		return nil
	}
	a.held += r.applyHints(hints, b.GetHints())
	r.counted(b.GetReplica(), a)
	m.Ack()
	return nil
}

// counted adds what applying a message did to the metrics, and logs the
// changes held or dropped at most every 10 s.
func (r *Replicator) counted(from string, a applied) {
	if a.dropped+a.held == 0 {
		return
	}
	r.m.rejected.WithLabelValues("invalid").Add(float64(a.dropped))
	r.m.held.Add(float64(a.held))
	r.warnBad.Do(func() {
		r.log.Warn("held another replica's stamps to the clock skew bound, or dropped changes naming no valid org (logged at most every 10s)",
			"from", from, "dropped", a.dropped, "held", a.held, "max_clock_skew", r.opts.MaxSkew)
	})
}

func (r *Replicator) countApplied(kind string, n int) {
	r.m.applied.WithLabelValues(kind).Add(float64(n))
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// applied is what applying a message or a chunk did: the items applied,
// those dropped (naming no valid org) or whose stamps were held to the
// skew bound, and the first org an item counts for that is not known here
// yet.
type applied struct {
	items, dropped, held int
	early                string
}

func (a *applied) add(b applied) {
	a.items, a.dropped, a.held = a.items+b.items, a.dropped+b.dropped, a.held+b.held
	a.early = cmp.Or(a.early, b.early)
}

// applyHints counts other replicas' enqueue hints (each once, whatever
// the redeliveries), their times held to the skew bound, and says how
// many were held.
func (r *Replicator) applyHints(hints Hints, list []*pb.SubscriptionHint) (held int) {
	if hints == nil {
		return 0
	}
	limit := r.now().Add(r.opts.MaxSkew)
	for _, h := range list {
		at := time.Unix(0, h.GetAtUnixNano())
		if at.After(limit) {
			at, held = limit, held+1
		}
		hints.ApplyHint(h.GetId(), h.GetSubscription(), h.GetMessages(), at)
	}
	return held
}

// errEarly is a message carrying idle counts or history of an org whose
// creation has not reached this replica yet (Pub/Sub does not order
// messages, and applies them concurrently): what could be applied was,
// and the message is applied again later, when the org is known.
var errEarly = errors.New("early")
