package replication

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Kind says how one kind of state travels between replicas: how its
// items coalesce while they wait to be published, how they cross the wire,
// and which of them are held or dropped on the way in. Package replicated
// fills one in for each store; replication knows none of the stores.
type Kind[T any, M proto.Message] struct {
	// Name names the kind in logs and in the metrics' kind label.
	Name string
	// Orgs marks the kind whose items are the orgs themselves (created,
	// changed, deleted): a message applies it before every other kind, and
	// a replica pruned after a long absence keeps the orgs a peer's
	// snapshot of it names. Its Local may say which orgs it knows (Known).
	Orgs bool
	// JoinOnly marks a kind a snapshot carries only when asked (the
	// request's usage flag): a joining replica asks, anti-entropy does not,
	// and a restart does not republish it (the log carries every item).
	JoinOnly bool

	// Key, when set, says what a queued item is the latest of: a newer
	// item with the same key replaces it (or merges with it, by
	// Coalesce). An item without a key (false) is queued by itself.
	Key func(T) (any, bool)
	// Coalesce, when set, merges a queued item with the next one of the
	// same key; without it the next replaces the queued one.
	Coalesce func(queued, next T) T

	// Encode and Decode are the item on the wire. Decode's false drops
	// it (damaged, or from a newer replica).
	Encode func(T) M
	Decode func(M) (T, bool)
	// Batch and Chunk are the fields of a replication message and of a
	// snapshot chunk that carry the kind.
	Batch func(*pb.ChangeBatch) *[]M
	Chunk func(*pb.SnapshotResponse) *[]M

	// Hold, when set, holds an item's stamps to limit (the clock skew
	// bound, ahead of this replica's clock) and says how many it held;
	// false drops the item (it names no valid org).
	Hold func(item T, limit time.Time) (T, int, bool)
	// Org, when set, names the org an item counts for ("" for none). An
	// item of an org the Orgs kind does not know here yet makes its
	// message early: applied again when Pub/Sub redelivers it, since
	// Pub/Sub neither orders messages nor applies them one at a time.
	Org func(T) string
}

// Local is a store's side of a kind: where other replicas' items go, and
// the store's whole state of it for a snapshot or a republish.
type Local[T any] interface {
	Merge([]T) error
	Export(send func([]T) error) error
}

// Knower is what the Orgs kind's Local may also provide: whether it holds
// an org or its tombstone.
type Knower interface {
	Known(org string) bool
}

// kind is a registered Kind, whatever its types.
type kind interface {
	name() string
	orgs() bool
	joinOnly() bool
	served() bool
	knower() Knower
	pending() int
	take(limit int) (batch, int)
	apply(from carrier, in applying) (applied, error)
	export(send func(*pb.SnapshotResponse) error) error
	republish(queue func(add func())) (int, error)
}

// batch is items of one kind taken for one publish.
type batch interface {
	len() int
	name() string
	encode(f *filler)
	putBack()
}

// carrier is a replication message or a snapshot chunk.
type carrier struct {
	batch *pb.ChangeBatch
	chunk *pb.SnapshotResponse
}

// applying is what applying a carrier needs besides it.
type applying struct {
	limit time.Time // stamps held to it; zero: none held
	known Knower    // nil: no item is early
	seen  func(org string)
}

// carried is a registered kind: its queue and its store.
type carried[T any, M proto.Message] struct {
	Kind[T, M]
	local Local[T]
	keyed map[any]T
	loose []T
}

func (c *carried[T, M]) name() string   { return c.Name }
func (c *carried[T, M]) orgs() bool     { return c.Orgs }
func (c *carried[T, M]) joinOnly() bool { return c.JoinOnly }
func (c *carried[T, M]) served() bool   { return c.local != nil }
func (c *carried[T, M]) pending() int   { return len(c.keyed) + len(c.loose) }

func (c *carried[T, M]) knower() Knower {
	k, _ := c.local.(Knower)
	return k
}

func (c *carried[T, M]) put(item T) {
	key, ok := c.keyOf(item)
	if !ok {
		c.loose = append(c.loose, item)
		return
	}
	if old, queued := c.keyed[key]; queued && c.Coalesce != nil {
		item = c.Coalesce(old, item)
	}
	c.keyed[key] = item
}

// putBack queues item again after a failed publish, under what was
// queued meanwhile (newer values win).
func (c *carried[T, M]) putBack(item T) {
	key, ok := c.keyOf(item)
	if !ok {
		c.loose = append(c.loose, item)
		return
	}
	newer, queued := c.keyed[key]
	switch {
	case !queued:
		c.keyed[key] = item
	case c.Coalesce != nil:
		c.keyed[key] = c.Coalesce(item, newer)
	}
}

func (c *carried[T, M]) keyOf(item T) (any, bool) {
	if c.Key == nil {
		return nil, false
	}
	return c.Key(item)
}

func (c *carried[T, M]) take(limit int) (batch, int) {
	b := &items[T, M]{c: c}
	for k, v := range c.keyed {
		if len(b.list) == limit {
			break
		}
		b.list = append(b.list, v)
		delete(c.keyed, k)
	}
	n := min(limit-len(b.list), len(c.loose))
	b.list = append(b.list, c.loose[:n]...)
	c.loose = c.loose[n:]
	return b, limit - len(b.list)
}

// apply decodes, holds and merges the kind's items in from, and names the
// first org an item counts for that is not known here yet.
func (c *carried[T, M]) apply(from carrier, in applying) (applied, error) {
	var a applied
	var wire []M
	switch {
	case from.batch != nil:
		wire = *c.Batch(from.batch)
	case from.chunk != nil:
		wire = *c.Chunk(from.chunk)
	}
	if len(wire) == 0 || c.local == nil {
		return a, nil
	}
	list := make([]T, 0, len(wire))
	for _, m := range wire {
		item, ok := c.Decode(m)
		if ok && c.Hold != nil && !in.limit.IsZero() {
			var held int
			item, held, ok = c.Hold(item, in.limit)
			a.held += held
			if !ok {
				a.dropped++
			}
		}
		if ok {
			list = append(list, item)
		}
	}
	if err := c.local.Merge(list); err != nil {
		return a, fmt.Errorf("%s: %w", c.Name, err)
	}
	a.items = len(list)
	for _, item := range list {
		switch org := c.orgOf(item); {
		case org == "":
		case c.Orgs && in.seen != nil:
			in.seen(org)
		case !c.Orgs && in.known != nil && a.early == "" && !in.known.Known(org):
			a.early = org
		}
	}
	return a, nil
}

func (c *carried[T, M]) orgOf(item T) string {
	if c.Org == nil {
		return ""
	}
	return c.Org(item)
}

// export sends the store's whole state of the kind, in chunks.
func (c *carried[T, M]) export(send func(*pb.SnapshotResponse) error) error {
	return c.local.Export(func(list []T) error {
		chunk := &pb.SnapshotResponse{}
		field := c.Chunk(chunk)
		for _, item := range list {
			*field = append(*field, c.Encode(item))
		}
		return send(chunk)
	})
}

// republish queues the store's whole state of the kind again.
func (c *carried[T, M]) republish(queue func(add func())) (int, error) {
	n := 0
	err := c.local.Export(func(list []T) error {
		queue(func() {
			for _, item := range list {
				c.put(item)
			}
		})
		n += len(list)
		return nil
	})
	return n, err
}

// items is a batch of one kind.
type items[T any, M proto.Message] struct {
	c    *carried[T, M]
	list []T
}

func (b *items[T, M]) len() int     { return len(b.list) }
func (b *items[T, M]) name() string { return b.c.Name }

func (b *items[T, M]) encode(f *filler) {
	for _, item := range b.list {
		fitIn(f, b.c.Encode(item), b.c.Batch)
	}
}

func (b *items[T, M]) putBack() {
	for _, item := range b.list {
		b.c.putBack(item)
	}
}
