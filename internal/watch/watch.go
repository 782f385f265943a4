// Package watch provides coalesced change signals: a watcher's channel
// holds at most one pending signal, so a burst of changes wakes it once and
// a notifier never blocks.
package watch

// Signal is one watcher's channel.
type Signal chan struct{}

// New returns a Signal.
func New() Signal { return make(Signal, 1) }

// List is the watchers of one thing. It is not safe for concurrent use: its
// owner guards it with the lock that guards the thing watched.
type List []Signal

// Add adds s.
func (l *List) Add(s Signal) { *l = append(*l, s) }

// Remove removes s, if present.
func (l *List) Remove(s Signal) {
	for i, x := range *l {
		if x == s {
			last := len(*l) - 1
			(*l)[i], (*l)[last] = (*l)[last], nil
			*l = (*l)[:last]
			return
		}
	}
}

// Notify signals every watcher without blocking.
func (l List) Notify() {
	for _, s := range l {
		select {
		case s <- struct{}{}:
		default:
		}
	}
}
