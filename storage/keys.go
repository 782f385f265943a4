package storage

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Space is one store's part of the database: every key it writes begins
// with Prefix, and its values are in format Version. A store that changes
// its format raises Version here; a database written by a newer format
// than this binary reads is refused at open, naming the space, rather than
// misread.
type Space struct {
	Prefix  string
	Version int
	Owner   string // the package that reads and writes it
	Holds   string // what one key holds
}

// Key is the space's key for suffix.
func (s Space) Key(suffix string) []byte { return append([]byte(s.Prefix), suffix...) }

// Every key space in the database. Prefixes never overlap: a store that
// scans its prefix sees only its own keys.
var (
	Orgs       = Space{"org/", 1, "activity", "one org: its activity, dormancy and settings (activity/record.go)"}
	Tombs      = Space{"tomb/", 1, "activity", "a deleted org's tombstone, kept activity.TombstoneTTL"}
	OrgCount   = Space{"meta/orgs", 1, "activity", "the number of orgs at the last full flush: a sizing hint"}
	Alive      = Space{"meta/alive", 1, "activity", "when the store last ran: how long a replica was away"}
	History    = Space{"hist/", 1, "history", "one org's active minutes of one UTC day (hist/YYYYMMDD/org)"}
	IdleOrgs   = Space{"idle/o/", 1, "idletimes", "one org's idle-time counts, as one replica saw them"}
	IdleFleet  = Space{"idle/f/", 1, "idletimes", "the fleet's idle-time counts, as one replica saw them"}
	UsageHours = Space{"usage/h/", 1, "usage", "one workload's GPU-hour figures of one hour (and leader's term)"}
	Pools      = Space{"pool/", 1, "pools", "one GPU pool's definition, or its tombstone (a pb.PoolDef)"}
	Format     = Space{"storage/format", 1, "storage", "the version of each space this database was written in"}
)

// Spaces lists every key space, in the order `Format` records them.
var Spaces = []Space{Orgs, Tombs, OrgCount, Alive, History, IdleOrgs, IdleFleet, UsageHours, Pools, Format}

// FormatError is a database written in a newer format than this binary
// reads: an older scaler started on a newer one's data dir.
type FormatError struct {
	Dir   string
	Space Space
	Found int
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("data dir %s holds %s (%s) in format %d, and this scaler reads format %d at most: a newer scaler wrote it; run that version, or restore an older data dir",
		e.Dir, strings.TrimSuffix(e.Space.Prefix, "/"), e.Space.Holds, e.Found, e.Space.Version)
}

// checkFormat refuses a database written in a newer format than Spaces
// say, and, when record is true, records this binary's versions (which
// are no older).
func checkFormat(db *badger.DB, dir string, record bool) error {
	return db.Update(func(txn *badger.Txn) error {
		found := map[string]int{}
		item, err := txn.Get(Format.Key(""))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read the data dir's format: %w", err)
		default:
			if err := item.Value(func(v []byte) error { return parseFormat(v, found) }); err != nil {
				return fmt.Errorf("data dir %s: its format record: %w", dir, err)
			}
		}
		for _, s := range Spaces {
			if v := found[s.Prefix]; v > s.Version {
				return &FormatError{Dir: dir, Space: s, Found: v}
			}
		}
		if !record {
			return nil
		}
		want := formatRecord(found)
		if item != nil {
			if same, _ := item.ValueCopy(nil); bytes.Equal(same, want) {
				return nil
			}
		}
		return txn.Set(Format.Key(""), want)
	})
}

// formatRecord is "prefix version" per line, for every space, and for
// any space a newer scaler recorded that this one does not know (kept, so
// that scaler reads its own again).
func formatRecord(found map[string]int) []byte {
	var b []byte
	known := map[string]bool{}
	for _, s := range Spaces {
		known[s.Prefix] = true
		b = fmt.Appendf(b, "%s %d\n", s.Prefix, s.Version)
	}
	for _, prefix := range slices.Sorted(maps.Keys(found)) {
		if !known[prefix] {
			b = fmt.Appendf(b, "%s %d\n", prefix, found[prefix])
		}
	}
	return b
}

func parseFormat(v []byte, into map[string]int) error {
	for line := range strings.Lines(string(v)) {
		prefix, version, ok := strings.Cut(strings.TrimSpace(line), " ")
		n, err := strconv.Atoi(version)
		if !ok || err != nil {
			return fmt.Errorf("line %q: expected PREFIX VERSION", strings.TrimSpace(line))
		}
		into[prefix] = n
	}
	return nil
}
