package activity

import (
	"slices"
	"time"
)

// Subscriber hears what happens to orgs, outside the store's locks, from
// the moment it subscribes; each func may be nil, and none may block.
// Consumers subscribe once they are whole, so nothing half-built is told.
type Subscriber struct {
	// Activity is each activity recorded here (not one Apply brings), with
	// the org's last activity before it (zero for a new org): the
	// keep-alive policy learns idle times from these, and the history
	// keeps their minutes.
	Activity func(org string, prev, at time.Time)
	// Transition is every org that woke or went dormant.
	Transition func(Transition)
	// Deleted is each org deleted, here or by another replica, once its
	// record is gone from disk: what is kept beside the org goes with it.
	Deleted func(org string)
}

// Subscribe adds sub to those told of what happens to orgs.
func (s *Store) Subscribe(sub Subscriber) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	var subs []Subscriber
	if p := s.subs.Load(); p != nil {
		subs = slices.Clone(*p)
	}
	subs = append(subs, sub)
	s.subs.Store(&subs)
}

// subscribers are those told now: read without a lock, as every
// activity reads them.
func (s *Store) subscribers() []Subscriber {
	if p := s.subs.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Store) activity(org string, prev, at time.Time) {
	for _, sub := range s.subscribers() {
		if sub.Activity != nil {
			sub.Activity(org, prev, at)
		}
	}
}

func (s *Store) transition(t Transition) {
	for _, sub := range s.subscribers() {
		if sub.Transition != nil {
			sub.Transition(t)
		}
	}
}

func (s *Store) deleted(org string) {
	for _, sub := range s.subscribers() {
		if sub.Deleted != nil {
			sub.Deleted(org)
		}
	}
}
