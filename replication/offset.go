package replication

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every message carries when its publisher's clock sent it; Pub/Sub
// stamps its publish time by the service's clock. Their difference, less
// the publish's latency, is the publisher's clock offset from Pub/Sub's:
// one reference every replica measures itself and its peers against,
// whatever their own clocks say. The least latency wins: the estimate is
// the largest difference over the last samples.
const (
	attrSent      = "sent" // Unix nanoseconds on the publisher's clock
	offsetSamples = 16
	// offsetForget drops a replica's estimate (and its metric series) when
	// it has published nothing for this long: it is gone.
	offsetForget = 10 * time.Minute
)

// offsets estimates every replica's clock offset from Pub/Sub's.
type offsets struct {
	gauge *prometheus.GaugeVec

	mu    sync.Mutex
	peers map[string]*window
}

type window struct {
	samples []time.Duration
	seen    time.Time // on this replica's clock
}

func newOffsets(reg prometheus.Registerer) *offsets {
	o := &offsets{peers: map[string]*window{},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "orgscaler_replica_clock_offset_seconds",
			Help: "Each replica's clock offset from Pub/Sub's (its messages' send time against their publish time, the least latency of the last 16), this one's included: positive is ahead."},
			[]string{"peer"})}
	if reg != nil {
		reg.MustRegister(o.gauge)
	}
	return o
}

// observe adds m's sample for replica (the one named in its body) and
// returns the replica's estimate; ok is false when m carries no send time.
func (o *offsets) observe(replica string, m *Message, now time.Time) (offset time.Duration, ok bool) {
	ns, err := strconv.ParseInt(m.Attributes[attrSent], 10, 64)
	if err != nil || m.PublishTime.IsZero() {
		return 0, false
	}
	sample := time.Unix(0, ns).Sub(m.PublishTime)
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.peers[replica]
	if w == nil {
		w = &window{}
		o.peers[replica] = w
	}
	if len(w.samples) == offsetSamples {
		w.samples = w.samples[1:]
	}
	w.samples, w.seen = append(w.samples, sample), now
	offset = slices.Max(w.samples)
	o.gauge.WithLabelValues(replica).Set(offset.Seconds())
	for id, w := range o.peers {
		if now.Sub(w.seen) > offsetForget {
			delete(o.peers, id)
			o.gauge.DeleteLabelValues(id)
		}
	}
	return offset, true
}

// estimates returns this replica's own offset estimate (ok false when it
// has none yet) and the median of the others'.
func (o *offsets) estimates(self string) (own, peers time.Duration, ok, havePeers bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var others []time.Duration
	for id, w := range o.peers {
		if len(w.samples) == 0 {
			continue
		}
		est := slices.Max(w.samples)
		if id == self {
			own, ok = est, true
			continue
		}
		others = append(others, est)
	}
	if len(others) == 0 {
		return own, 0, ok, false
	}
	slices.Sort(others)
	return own, others[len(others)/2], ok, true
}

// skew takes this replica out of service (OnSkew(true)) when its clock is
// off by more than MaxSkew both from Pub/Sub's and from its peers' (their
// median): the point is that KEDA's round robin never mixes answers from
// clocks that disagree, so a fleet whose clocks are all equally off keeps
// serving, and a lone replica always does. Back within half the bound of
// either, it serves again.
func (r *Replicator) skew() {
	if r.opts.OnSkew == nil || r.opts.MaxSkew <= 0 {
		return
	}
	own, peers, ok, havePeers := r.offsets.estimates(r.opts.Replica)
	if !ok {
		return
	}
	off := havePeers && own.Abs() > r.opts.MaxSkew && (own-peers).Abs() > r.opts.MaxSkew
	back := !havePeers || own.Abs() <= r.opts.MaxSkew/2 || (own-peers).Abs() <= r.opts.MaxSkew/2
	r.skewMu.Lock()
	defer r.skewMu.Unlock()
	switch {
	case !r.skewed && off:
		r.skewed = true
		r.log.Error("this replica's clock is off from Pub/Sub's and from its peers' by more than --max-clock-skew: not serving until it is back, so KEDA's round robin never mixes its answers in; fix the node's clock (NTP)",
			"offset", own.Round(time.Millisecond), "peers_offset", peers.Round(time.Millisecond), "max_clock_skew", r.opts.MaxSkew)
		r.opts.OnSkew(true)
	case r.skewed && back:
		r.skewed = false
		r.log.Info("this replica's clock is back within --max-clock-skew: serving again", "offset", own.Round(time.Millisecond), "peers_offset", peers.Round(time.Millisecond))
		r.opts.OnSkew(false)
	}
}
