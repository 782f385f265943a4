package replication

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// receive applies other replicas' changes from this replica's
// subscription, acknowledging each message once it is on disk here. It
// returns a *TwinError when another live process uses this replica's id.
func (r *Replicator) receive(ctx context.Context, sinks Sinks) error {
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var twin atomic.Pointer[TwinError] // handle may run concurrently
	for {
		err := r.tr.Receive(rctx, func(m *Message) {
			if t := r.handle(m, sinks); t != nil {
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
func (r *Replicator) handle(m *Message, sinks Sinks) *TwinError {
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
	a, err := sinks.apply(&b)
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
	a.held += sinks.applyHints(b.GetHints())
	r.counted(b.GetReplica(), a, sinks.MaxSkew)
	m.Ack()
	return nil
}

// counted adds what applying a message did to the metrics, and logs the
// changes held or dropped at most every 10 s.
func (r *Replicator) counted(from string, a applied, skew time.Duration) {
	r.m.applied.Add(float64(a.orgs))
	if a.dropped+a.held == 0 {
		return
	}
	r.m.rejected.WithLabelValues("invalid").Add(float64(a.dropped))
	r.m.held.Add(float64(a.held))
	r.warnBad.Do(func() {
		r.log.Warn("held another replica's stamps to the clock skew bound, or dropped changes naming no valid org (logged at most every 10s)",
			"from", from, "dropped", a.dropped, "held", a.held, "max_clock_skew", skew)
	})
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// parts is what a replication message and a snapshot chunk both carry.
type parts interface {
	GetChanges() []*pb.OrgChange
	GetUsage() []*pb.UsageHour
	GetIdleTimes() []*pb.IdleCounts
	GetHistory() []*pb.ActivityDay
}

// applied is what applying a message or a chunk did: the org changes
// applied, and those dropped (naming no valid org) or whose stamps were
// held to the skew bound.
type applied struct{ orgs, dropped, held int }

// apply applies m to the sinks, the orgs first (counts and days of an org
// this replica does not hold are dropped), every stamp held to the skew
// bound (validate.go).
func (s Sinks) apply(m parts) (applied, error) {
	var a applied
	changes := fromProto(m.GetChanges())
	if s.Now != nil {
		changes, a.dropped, a.held = bounded(changes, s.Now().Add(s.MaxSkew))
	}
	if err := s.Store.Apply(changes); err != nil {
		return a, fmt.Errorf("orgs: %w", err)
	}
	if s.Usage != nil && len(m.GetUsage()) > 0 {
		if err := s.Usage.Merge(usageFromProto(m.GetUsage())); err != nil {
			return a, fmt.Errorf("usage: %w", err)
		}
	}
	if s.Idle != nil {
		for _, c := range idleFromProto(m.GetIdleTimes()) {
			if err := s.Idle.Merge(c); err != nil {
				return a, fmt.Errorf("idle times: %w", err)
			}
		}
	}
	if s.History != nil && len(m.GetHistory()) > 0 {
		if err := s.History.Merge(daysFromProto(m.GetHistory())); err != nil {
			return a, fmt.Errorf("activity history: %w", err)
		}
	}
	if org := s.early(m); org != "" {
		return a, fmt.Errorf("%w: idle times or history of org %q, not yet created here", errEarly, org)
	}
	a.orgs = len(changes)
	return a, nil
}

// applyHints counts other replicas' enqueue hints (each once, whatever
// the redeliveries), their times held to the skew bound, and says how
// many were held.
func (s Sinks) applyHints(hints []*pb.SubscriptionHint) (held int) {
	if s.Hints == nil {
		return 0
	}
	for _, h := range hints {
		at := time.Unix(0, h.GetAtUnixNano())
		if s.Now != nil {
			if limit := s.Now().Add(s.MaxSkew); at.After(limit) {
				at, held = limit, held+1
			}
		}
		s.Hints.ApplyHint(h.GetId(), h.GetSubscription(), h.GetMessages(), at)
	}
	return held
}

// errEarly is a message carrying idle counts or history of an org whose
// creation has not reached this replica yet (Pub/Sub does not order
// messages, and applies them concurrently): what could be applied was,
// and the message is applied again later, when the org is known.
var errEarly = errors.New("early")

// early names an org m carries idle counts or history of that the store
// has not heard of ("" when none).
func (s Sinks) early(m parts) string {
	if s.Known == nil {
		return ""
	}
	for _, c := range m.GetIdleTimes() {
		if org := c.GetOrg(); org != "" && !s.Known(org) {
			return org
		}
	}
	for _, d := range m.GetHistory() {
		if !s.Known(d.GetOrg()) {
			return d.GetOrg()
		}
	}
	return ""
}
