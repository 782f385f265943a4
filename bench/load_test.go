// Package bench holds the benchmarks behind docs/BENCHMARKS.md. Each one
// runs a whole scenario once and reports its figures with b.ReportMetric:
// `make bench` runs them and writes the document; `make test` runs each
// once in -short mode, with small sizes, to keep them working.
package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// latencies is a sample of call durations.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// closedLoop calls call from conc goroutines as fast as they return, for
// d, and returns the calls per second and their latencies.
func closedLoop(b *testing.B, conc int, d time.Duration, call func(ctx context.Context) error) (float64, latencies) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var all latencies
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			own := make(latencies, 0, 1<<16)
			for ctx.Err() == nil {
				t := time.Now()
				if err := call(context.Background()); err != nil {
					errs.Add(1)
					continue
				}
				own = append(own, time.Since(t))
			}
			mu.Lock()
			all = append(all, own...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := errs.Load(); n > 0 {
		b.Fatalf("%d calls failed", n)
	}
	return float64(len(all)) / time.Since(start).Seconds(), all
}

// openLoop starts calls at rate per second for d, whatever the answers
// take (so a slow server cannot slow the load and hide its latency), and
// returns their latencies, from send to answer, and how late the generator
// sent them. Lateness is the Go timer's wake-up jitter (up to a
// millisecond), not queueing: no sender waits for an answer.
func openLoop(b *testing.B, rate int, d time.Duration, call func(ctx context.Context) error) (lat, late latencies) {
	b.Helper()
	n := int(float64(rate) * d.Seconds())
	lat, late = make(latencies, n), make(latencies, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	// A few tickers share the rate: one goroutine cannot start 10k calls a
	// second with even spacing on 2 cores.
	const senders = 8
	interval := time.Duration(float64(time.Second) / float64(rate) * senders)
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			var calls sync.WaitGroup
			for i := s; i < n; i += senders {
				at := start.Add(time.Duration(i/senders)*interval + time.Duration(s)*interval/senders)
				if w := time.Until(at); w > 0 {
					time.Sleep(w)
				}
				calls.Go(func() {
					sent := time.Now()
					if err := call(context.Background()); err != nil {
						errs.Add(1)
					}
					lat[i] = time.Since(sent)
					late[i] = sent.Sub(at)
				})
			}
			calls.Wait()
		})
	}
	wg.Wait()
	if e := errs.Load(); e > 0 {
		b.Fatalf("%d of %d calls failed", e, n)
	}
	return lat, late
}
