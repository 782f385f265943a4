// Package pacing spreads a large write over time: in chunks, each followed
// by a rest twice as long as it took, within a deadline. A flush of 100k
// records is a third of a second of Badger's CPU, and at once it would
// take both cores from KEDA's answers.
package pacing

import "time"

// Options say how to pace one write.
type Options struct {
	Chunk    int       // items per chunk
	Deadline time.Time // no rest that would end after it
	// Rest waits d (and may do urgent work meanwhile); nil sleeps. Hurry,
	// when set and true, skips the rests: a stop wants everything now.
	Rest  func(d time.Duration)
	Hurry func() bool
}

// Write calls write for each chunk [lo, hi) of n items, in order, resting
// between chunks. It returns the first error, with the index of the first
// item not written.
func Write(n int, o Options, write func(lo, hi int) error) (int, error) {
	for lo := 0; lo < n; {
		hi := min(n, lo+o.Chunk)
		start := time.Now()
		if err := write(lo, hi); err != nil {
			return lo, err
		}
		lo = hi
		rest := 2 * time.Since(start)
		if lo == n || (o.Hurry != nil && o.Hurry()) || !time.Now().Add(rest).Before(o.Deadline) {
			continue
		}
		if o.Rest != nil {
			o.Rest(rest)
		} else {
			time.Sleep(rest)
		}
	}
	return n, nil
}
