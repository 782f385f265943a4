package usage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgscaler/orgscaler/storage"
)

// MaxGap is the longest time one answer is taken to hold. KEDA asks about
// every ScaledObject at least every pollingInterval; a workload nobody has
// asked about for longer is one the scaler cannot vouch for (a deleted
// ScaledObject, KEDA down), and the rest of the gap is not counted.
const MaxGap = 10 * time.Minute

// DefaultRetention is how long hourly figures are kept.
const DefaultRetention = 31 * 24 * time.Hour

// Answer is what the scaler told KEDA about one workload.
type Answer struct {
	Kind     string
	Org      string
	GPUs     int64 // gpusPerReplica
	GPUType  string
	Active   bool
	Replicas int64 // the replicas asked for (the metric value, target 1)
	Cause    Cause // what made it active, when it is
}

// state is a workload's last answer, held until the next.
type state struct {
	at       time.Time
	kind     string
	org      string
	gpus     int64
	gpuType  string
	active   bool
	replicas int64
}

type bucketKey struct {
	hour int64 // Unix seconds of the hour's start
	id   string
	// term is the fleet leader's term that counted it ("" with one
	// replica): replicas keep each term's figures apart and sum them, so
	// a leader that goes on before the last one's figures reached it
	// loses none of them.
	term string
}

// Ledger keeps the figures. Its methods are safe for concurrent use.
type Ledger struct {
	db        *badger.DB
	log       *slog.Logger
	retention time.Duration
	checkDisk func() error
	onFlush   func([]Hour)
	now       func() time.Time
	// writeMu orders the writes of Flush and Merge: each writes the copy
	// it took, so a later copy is never overwritten by an earlier one.
	writeMu sync.Mutex

	mu     sync.Mutex
	term   string                 // the term new figures are counted in
	last   map[string]*state      // per workload
	hours  map[bucketKey]*Figures // the hours answers may still fall in, and any not yet written
	dirty  map[bucketKey]bool
	totals map[string]*Figures // since this process started, for Prometheus
	full   bool                // MaxWorkloads reached (logged once)
	// floor is the oldest hour memory holds in full: an hour at or after it
	// that memory lacks is new, and is not looked for on disk.
	floor int64
}

// MaxWorkloads bounds the workloads the ledger follows, so a client of the
// KEDA port inventing names cannot grow it without bound.
const MaxWorkloads = 100_000

// Options configure a Ledger.
type Options struct {
	Logger     *slog.Logger
	Retention  time.Duration // hourly figures older than this are dropped; DefaultRetention when 0
	Registerer prometheus.Registerer
	Now        func() time.Time // time.Now when nil
	// CheckDisk, when set, is asked before each write; an error skips the
	// write (the figures stay in memory for the next one).
	CheckDisk func() error
	// OnFlush, when set, is handed the hours each flush wrote (to publish
	// them to the other replicas). It must not block.
	OnFlush func([]Hour)
}

// Keys: hourly figures sort by hour, so a report reads one range.
var hourPrefix = []byte(storage.UsageHours.Prefix)

// termSep ends a workload's id in a key that names a leader's term; ids
// hold only "\x00" (between the ScaledObject and the metric).
const termSep = "\x01"

func parseHourKey(key []byte) (bucketKey, bool) {
	key = key[len(hourPrefix):]
	if len(key) < 8 {
		return bucketKey{}, false
	}
	k := bucketKey{hour: int64(binary.BigEndian.Uint64(key)), id: string(key[8:])}
	if i := strings.LastIndex(k.id, termSep); i >= 0 {
		k.id, k.term = k.id[:i], k.id[i+1:]
	}
	return k, true
}

func hourKey(k bucketKey) []byte {
	b := append([]byte{}, hourPrefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(k.hour))
	b = append(b, k.id...)
	if k.term != "" {
		b = append(append(b, termSep...), k.term...)
	}
	return b
}

// Open reads the current hour's figures from db, which the caller keeps
// open for longer than the Ledger, so answers never wait on the disk.
func Open(db *badger.DB, o Options) (*Ledger, error) {
	l := &Ledger{db: db, log: o.Logger, retention: o.Retention, checkDisk: o.CheckDisk, onFlush: o.OnFlush, now: o.Now,
		last: map[string]*state{}, hours: map[bucketKey]*Figures{}, dirty: map[bucketKey]bool{},
		totals: map[string]*Figures{}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("component", "usage")
	if l.retention <= 0 {
		l.retention = DefaultRetention
	}
	if l.now == nil {
		l.now = time.Now
	}
	current := hourOf(l.now())
	l.floor = current
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: hourKey(bucketKey{hour: current})})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k, _ := parseHourKey(it.Item().Key())
			err := it.Item().Value(func(v []byte) error {
				f, err := unmarshal(v)
				l.hours[k] = &f
				return err
			})
			if err != nil {
				return fmt.Errorf("usage of %q at %s: %w", k.id, time.Unix(k.hour, 0).UTC(), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(collector{l})
	}
	return l, nil
}

// Observe records that the scaler answered a for workload id at now: the
// time since its previous answer is counted under that previous answer (up
// to MaxGap), and an inactive→active change is a wake.
func (l *Ledger) Observe(id string, a Answer, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, seen := l.last[id]
	if !seen {
		if len(l.last) >= MaxWorkloads {
			if !l.full {
				l.full = true
				l.log.Warn("usage ledger full: new workloads are not counted", "max", MaxWorkloads, "workload", id)
			}
			return
		}
		s = &state{}
		l.last[id] = s
	} else {
		if now.Before(s.at) {
			return // answered concurrently; the later one is already in
		}
		l.accrue(id, *s, s.at, min(now.Sub(s.at), MaxGap))
		if !s.active && a.Active {
			l.hour(bucketKey{hourOf(now), id, l.term}).Wakes[a.Cause]++
			l.total(id).Wakes[a.Cause]++
		}
	}
	*s = state{at: now, kind: a.Kind, org: a.Org, gpus: a.GPUs, gpuType: a.GPUType, active: a.Active, replicas: a.Replicas}
}

// Forget stops following workload id (its trigger is gone): its last
// answer counts up to now, its hours stay until the retention drops them.
func (l *Ledger) Forget(id string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.last[id]
	if !ok {
		return
	}
	if now.After(s.at) {
		l.accrue(id, *s, s.at, min(now.Sub(s.at), MaxGap))
	}
	delete(l.last, id)
	delete(l.totals, id)
	l.full = false
}

// Following is how many workloads the ledger follows.
func (l *Ledger) Following() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.last)
}

// accrue counts d of state s from start, split at hour boundaries.
func (l *Ledger) accrue(id string, s state, start time.Time, d time.Duration) {
	l.total(id).accrue(s, d)
	for d > 0 {
		h := hourOf(start)
		part := min(d, time.Unix(h, 0).Add(time.Hour).Sub(start))
		l.hour(bucketKey{h, id, l.term}).accrue(s, part)
		start, d = start.Add(part), d-part
	}
}

func hourOf(t time.Time) int64 { return t.Unix() - t.Unix()%3600 }

// hour returns the figures of an hour. Memory holds every hour from floor
// on in full (Open loaded the hour it started in; Flush keeps every hour an
// answer may still fall in), so a missing one there is new; the disk is
// read only for an hour before floor: a workload nobody asked about for
// hours, or a clock stepped back. Caller holds l.mu.
func (l *Ledger) hour(k bucketKey) *Figures {
	l.dirty[k] = true
	if f, ok := l.hours[k]; ok {
		return f
	}
	f := &Figures{}
	if k.hour >= l.floor {
		l.hours[k] = f
		return f
	}
	err := l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(hourKey(k))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			*f, err = unmarshal(v)
			return err
		})
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		// Start the hour afresh rather than stop counting.
		l.log.Error("reading an hour of usage; counting it from now", "workload", k.id, "hour", time.Unix(k.hour, 0).UTC(), "err", err)
		*f = Figures{}
	}
	l.hours[k] = f
	return f
}

func (l *Ledger) total(id string) *Figures {
	f, ok := l.totals[id]
	if !ok {
		f = &Figures{}
		l.totals[id] = f
	}
	return f
}

// Flush writes every hour changed since the last flush, and forgets the
// hours no answer can fall in any more. On failure they stay to be written
// next time.
func (l *Ledger) Flush(now time.Time) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	changed := make(map[bucketKey]Figures, len(l.dirty))
	for k := range l.dirty {
		changed[k] = *l.hours[k]
	}
	clear(l.dirty)
	l.mu.Unlock()
	// Marshalled and written outside the lock: answers go on meanwhile.
	wb := l.db.NewWriteBatch()
	defer wb.Cancel()
	var err error
	if l.checkDisk != nil {
		err = l.checkDisk()
	}
	for k, f := range changed {
		if err != nil {
			break
		}
		err = errors.Join(err, wb.SetEntry(badger.NewEntry(hourKey(k), f.marshal()).WithTTL(l.retention+time.Hour)))
	}
	if err == nil {
		err = wb.Flush()
	}
	if err == nil && l.onFlush != nil && len(changed) > 0 {
		hours := make([]Hour, 0, len(changed))
		for k, f := range changed {
			hours = append(hours, Hour{Start: time.Unix(k.hour, 0).UTC(), ID: k.id, Term: k.term, Figures: f})
		}
		l.onFlush(hours)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		for k := range changed {
			l.dirty[k] = true
		}
		return fmt.Errorf("write usage: %w", err)
	}
	oldest := hourOf(now.Add(-MaxGap))
	maps.DeleteFunc(l.hours, func(k bucketKey, _ *Figures) bool { return k.hour < oldest && !l.dirty[k] })
	if oldest > l.floor {
		// A dirty hour below oldest stays in memory, so every hour from
		// oldest on is whole here.
		l.floor = oldest
	}
	return nil
}

// Run flushes every interval until ctx ends, and once more then.
func (l *Ledger) Run(ctx context.Context, interval time.Duration, now func() time.Time) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := l.Flush(now()); err != nil {
				l.log.Error("usage not written at stop", "err", err)
			}
			return
		case <-t.C:
			if err := l.Flush(now()); err != nil {
				l.log.Error("usage not written; retrying at the next flush", "err", err)
			}
		}
	}
}
