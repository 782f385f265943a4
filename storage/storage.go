// Package storage owns the scaler's one Badger database: it opens it as
// the scaler tunes it, refuses one written in a newer format, checks the
// disk before writes, reclaims the value log, and closes it. Each store
// (activity, history, idletimes, usage) keeps its keys in its own space,
// and keys.go lists every space and its format version.
package storage

import (
	"cmp"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a DB.
type Options struct {
	// Dir holds the database; it is created if missing.
	Dir    string
	Logger *slog.Logger
	// Registerer, when set, gets the value-log GC's metrics.
	Registerer prometheus.Registerer
	// MinFreeDisk is the free space (bytes) the data dir's filesystem must
	// keep for stores to write (0: no check). Badger maps its files into
	// memory, and a write into a full filesystem through a mapping kills
	// the process (SIGBUS), so stores stop writing first (CheckDisk).
	MinFreeDisk uint64
	// tune, when set, changes Badger's options (tests: tiny files).
	tune func(badger.Options) badger.Options
}

// DB is the open database.
type DB struct {
	db      *badger.DB
	o       Options
	log     *slog.Logger
	metrics *metrics
}

// Open opens (or creates) the database in o.Dir. A database that cannot be
// read, or was written in a newer format, is an error: the scaler never
// starts empty over it.
func Open(o Options) (*DB, error) {
	log := cmp.Or(o.Logger, slog.New(slog.DiscardHandler))
	bo := badger.DefaultOptions(o.Dir).
		WithLogger(badgerLogger{log.With("component", "badger")}).
		// Small: a million orgs are ~40 MB on disk, read in full only at
		// start, and the memory goes to the orgs themselves. Memtables are
		// allocated whole; table indices stay in memory (no index cache).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(0).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2)
	if o.tune != nil {
		bo = o.tune(bo)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open data dir %s: %w", o.Dir, err)
	}
	d := &DB{db: db, o: o, log: log.With("component", "storage")}
	// On a nearly full disk the versions are checked but not recorded: a
	// write there is what CheckDisk guards against.
	if err := checkFormat(db, o.Dir, d.CheckDisk() == nil); err != nil {
		_ = db.Close()
		return nil, err
	}
	d.metrics = newMetrics(o.Registerer, d)
	return d, nil
}

// Badger is the database, for the stores' transactions in their spaces.
func (d *DB) Badger() *badger.DB { return d.db }

// Dir is the data dir.
func (d *DB) Dir() string { return d.o.Dir }

// Close closes the database, once every store on it has written its last.
func (d *DB) Close() error { return d.db.Close() }

// DiskFullError is a write not made because the data dir's filesystem has
// less free space than MinFreeDisk.
type DiskFullError struct {
	Dir        string
	Free, Want uint64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("data dir %s has %d MiB free, less than the %d MiB the scaler keeps free (--min-free-disk-mb): not writing, so the database stays whole; free some space",
		e.Dir, e.Free>>20, e.Want>>20)
}

// CheckDisk returns a *DiskFullError when the data dir's filesystem is
// nearly full: every store asks it before writing.
func (d *DB) CheckDisk() error {
	if d.o.MinFreeDisk == 0 {
		return nil
	}
	free, err := d.free()
	if err != nil {
		return err
	}
	if free < d.o.MinFreeDisk {
		return &DiskFullError{Dir: d.o.Dir, Free: free, Want: d.o.MinFreeDisk}
	}
	return nil
}

// free is the space left to unprivileged writers on the data dir's
// filesystem.
func (d *DB) free() (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.o.Dir, &st); err != nil {
		return 0, fmt.Errorf("free space of data dir %s: %w", d.o.Dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// badgerLogger sends Badger's logs to slog; its chatty info lines go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(trim(fmt.Sprintf(f, a...))) }

func trim(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

var _ badger.Logger = badgerLogger{}
