package replication

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// MemoryTopic is a topic in one process: each of its subscriptions gets
// every message published after it was made, until acknowledged; a
// message nacked comes back after RedeliverAfter. Tests run a fleet on it
// without Pub/Sub, and break it (DeleteSubscription) as they would Pub/Sub.
type MemoryTopic struct {
	now            func() time.Time
	RedeliverAfter time.Duration

	mu   sync.Mutex
	subs map[string]*memorySub
	ids  int
}

type memorySub struct {
	queue []*Message
	ready chan struct{} // signalled when the queue grows
	gone  chan struct{} // closed when the subscription is deleted
}

// NewMemoryTopic returns an empty topic whose publish times come from now
// (time.Now when nil).
func NewMemoryTopic(now func() time.Time) *MemoryTopic {
	if now == nil {
		now = time.Now
	}
	return &MemoryTopic{now: now, RedeliverAfter: 10 * time.Millisecond, subs: map[string]*memorySub{}}
}

// Transport is the Transport of the replica whose subscription is sub.
func (t *MemoryTopic) Transport(sub string) Transport { return &memoryTransport{topic: t, sub: sub} }

// DeleteSubscription takes sub away, as an operator or an expiry would.
func (t *MemoryTopic) DeleteSubscription(sub string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.subs[sub]; ok {
		close(s.gone)
		delete(t.subs, sub)
	}
}

func (t *MemoryTopic) deliver(name string, m *Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.subs[name]; ok {
		s.queue = append(s.queue, m)
		signal(s.ready)
	}
}

// redeliver queues m again on s, unless s was deleted meanwhile (a
// subscription made again under its name never gets older messages).
func (t *MemoryTopic) redeliver(name string, s *memorySub, m *Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subs[name] == s {
		s.queue = append(s.queue, m)
		signal(s.ready)
	}
}

type memoryTransport struct {
	topic *MemoryTopic
	sub   string
}

func (m *memoryTransport) Subscribe(context.Context) (bool, error) {
	t := m.topic
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.subs[m.sub]; ok {
		return false, nil
	}
	t.subs[m.sub] = &memorySub{ready: make(chan struct{}, 1), gone: make(chan struct{})}
	return true, nil
}

func (m *memoryTransport) Publish(ctx context.Context, msgs []Outgoing) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := m.topic
	t.mu.Lock()
	names := slices.Collect(maps.Keys(t.subs))
	at := t.now()
	first := t.ids
	t.ids += len(msgs)
	t.mu.Unlock()
	for i, o := range msgs {
		id := strconv.Itoa(first + i)
		for _, name := range names {
			t.deliver(name, &Message{ID: id, Data: o.Data, Attributes: maps.Clone(o.Attributes), PublishTime: at})
		}
	}
	return nil
}

func (m *memoryTransport) Receive(ctx context.Context, handle func(*Message)) error {
	t := m.topic
	t.mu.Lock()
	first := t.subs[m.sub]
	t.mu.Unlock()
	for ctx.Err() == nil {
		t.mu.Lock()
		s := t.subs[m.sub]
		var next *Message
		if s == first && s != nil && len(s.queue) > 0 {
			next, s.queue = s.queue[0], s.queue[1:]
		}
		t.mu.Unlock()
		if s == nil || s != first { // deleted, perhaps made again since
			return fmt.Errorf("%w: %s", ErrSubscriptionGone, m.sub)
		}
		if next == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-s.gone:
			case <-s.ready:
			}
			continue
		}
		msg := *next
		var once sync.Once
		msg.ack = func(ok bool) {
			once.Do(func() {
				if !ok {
					time.AfterFunc(t.RedeliverAfter, func() { t.redeliver(m.sub, s, next) })
				}
			})
		}
		handle(&msg)
	}
	return nil
}

func (m *memoryTransport) Close() error { return nil }
