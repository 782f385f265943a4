package replication

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Kinds is every kind of state this replica's stores exchange with other
// replicas and with a backup, in the order a message applies them (the
// Orgs kind first). Register each before the stores open; a Replicator
// publishes and applies them, and a snapshot or a restore uses them with
// or without one.
type Kinds struct {
	list    []kind
	queue   func(add func()) // the Replicator's; nil: nothing is published
	now     func() time.Time
	maxSkew time.Duration
}

// NewKinds returns an empty registry whose applies hold stamps to maxSkew
// ahead of now (defaults: time.Now, DefaultMaxClockSkew).
func NewKinds(now func() time.Time, maxSkew time.Duration) *Kinds {
	if now == nil {
		now = time.Now
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxClockSkew
	}
	return &Kinds{now: now, maxSkew: maxSkew}
}

// Outbox queues one kind's items made here for publishing.
type Outbox[T any, M proto.Message] struct {
	ks *Kinds
	k  *carried[T, M]
}

// Register adds a kind to ks and returns its outbox. Kinds apply in the
// order registered, after the Orgs kind; Serve gives each its store.
func Register[T any, M proto.Message](ks *Kinds, k Kind[T, M]) *Outbox[T, M] {
	c := &carried[T, M]{Kind: k, keyed: map[any]T{}}
	if k.Orgs {
		ks.list = append([]kind{c}, ks.list...)
	} else {
		ks.list = append(ks.list, c)
	}
	return &Outbox[T, M]{ks: ks, k: c}
}

// Serve makes local the store other replicas' items of the kind go to,
// and what a snapshot exports of it.
func (o *Outbox[T, M]) Serve(local Local[T]) { o.k.local = local }

// Enqueue queues an item made here. It never blocks: queued items of
// one key coalesce to the latest.
func (o *Outbox[T, M]) Enqueue(item T) { o.ks.enqueue(func() { o.k.put(item) }) }

// EnqueueAll queues items made here, in order (a later one of a key
// replaces an earlier).
func (o *Outbox[T, M]) EnqueueAll(items []T) {
	o.ks.enqueue(func() {
		for _, it := range items {
			o.k.put(it)
		}
	})
}

func (ks *Kinds) enqueue(add func()) {
	if ks.queue != nil {
		ks.queue(add)
	}
}

// unserved names a registered kind that has no store ("" when none).
func (ks *Kinds) unserved() string {
	for _, k := range ks.list {
		if !k.served() {
			return k.name()
		}
	}
	return ""
}

// Snapshot sends the state of every kind, in chunks as replicas exchange
// them, the Orgs kind first; the JoinOnly kinds only when withJoinOnly
// (SnapshotRequest.usage): what AdminService.Snapshot streams to a peer,
// and what a backup holds.
func (ks *Kinds) Snapshot(withJoinOnly bool, send func(*pb.SnapshotResponse) error) error {
	for _, k := range ks.list {
		if k.joinOnly() && !withJoinOnly {
			continue
		}
		if err := k.export(send); err != nil {
			return err
		}
	}
	return nil
}

// Restore applies one chunk of a snapshot (a backup's) to the stores, as
// a joining replica applies a peer's, and says how many items it applied.
func (ks *Kinds) Restore(chunk *pb.SnapshotResponse) (int, error) {
	return ks.applyChunk(chunk, nil, nil)
}

// applyChunk applies a snapshot's chunk: unlike a message, it is never
// early (the snapshot's orgs came first; counts of an org it no longer
// held are all there is to apply), and says how many items it applied.
func (ks *Kinds) applyChunk(chunk *pb.SnapshotResponse, seen func(org string), count func(kind string, n int)) (int, error) {
	a, err := ks.apply(carrier{chunk: chunk}, seen, count)
	if errors.Is(err, errEarly) {
		err = nil
	}
	return a.items, err
}

// apply applies what from carries to every kind's store, the Orgs kind
// first, every stamp held to the skew bound (validate.go); seen, when set,
// is told every org the Orgs kind's items name, and count how many items
// of each kind were applied. An item of an org not known here yet
// (errEarly) does not stop the rest: what can be applied is, and the
// message is applied again later.
func (ks *Kinds) apply(from carrier, seen func(org string), count func(kind string, n int)) (applied, error) {
	var a applied
	in := applying{limit: ks.now().Add(ks.maxSkew), seen: seen}
	for _, k := range ks.list {
		if k.orgs() {
			in.known = k.knower()
		}
		b, err := k.apply(from, in)
		a.add(b)
		if count != nil {
			count(k.name(), b.items)
		}
		if err != nil {
			return a, err
		}
	}
	if a.early != "" {
		return a, fmt.Errorf("%w: idle times or history of org %q, not yet created here", errEarly, a.early)
	}
	return a, nil
}

// joinOnly says whether a kind is carried only to a joining replica.
func (ks *Kinds) joinOnly() bool {
	for _, k := range ks.list {
		if k.joinOnly() {
			return true
		}
	}
	return false
}
