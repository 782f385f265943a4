package storage

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// No space's prefix begins another's: a store scanning its prefix never
// reads another store's keys.
func TestSpacesDoNotOverlap(t *testing.T) {
	for i, a := range Spaces {
		if a.Prefix == "" || a.Version < 1 || a.Owner == "" || a.Holds == "" {
			t.Errorf("space %+v: want a prefix, a version, an owner and what it holds", a)
		}
		for j, b := range Spaces {
			if i != j && strings.HasPrefix(b.Prefix, a.Prefix) {
				t.Errorf("space %q begins space %q", a.Prefix, b.Prefix)
			}
		}
	}
}

func setFormat(t *testing.T, dir, record string) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(Format.Key(""), []byte(record)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// A data dir a newer scaler wrote in a newer format of one space is
// refused, naming the dir, the space and both versions, and left as it
// was; a space only the newer scaler knows is kept in the record.
func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	setFormat(t, dir, "org/ 2\npools/ 1\n")
	for range 2 { // refused again: the first refusal changed nothing
		_, err := Open(Options{Dir: dir})
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Space.Prefix != Orgs.Prefix || fe.Found != 2 ||
			!strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "format 2") || !strings.Contains(err.Error(), "format 1") {
			t.Fatalf("open a data dir with orgs in format 2: %v; want a FormatError naming org, 2 and 1", err)
		}
	}
	setFormat(t, dir, "org/ 1\npools/ 1\n")
	d, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("same versions, and a space this scaler does not know: %v", err)
	}
	defer d.Close()
	var got string
	if err := d.Badger().View(func(txn *badger.Txn) error {
		item, err := txn.Get(Format.Key(""))
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		got = string(v)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "pools/ 1\n") || !strings.Contains(got, "usage/h/ 1\n") {
		t.Fatalf("format record %q: want every space of this scaler's, and the newer one's pools/", got)
	}
}

// A format record that cannot be read is an error, not an empty start.
func TestUnreadableFormatRecord(t *testing.T) {
	dir := t.TempDir()
	setFormat(t, dir, "org/ one\n")
	if _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "PREFIX VERSION") {
		t.Fatalf("open with a format record of %q: %v; want an error saying what is expected", "org/ one", err)
	}
}

// On a nearly full disk (free space below MinFreeDisk) the data dir still
// opens, a newer format is still refused, and nothing is written.
func TestFormatOnANearlyFullDisk(t *testing.T) {
	full := Options{MinFreeDisk: math.MaxUint64}
	dir := t.TempDir()
	full.Dir = dir
	d, err := Open(full)
	if err != nil {
		t.Fatalf("open on a nearly full disk: %v", err)
	}
	if err := d.Badger().View(func(txn *badger.Txn) error {
		_, err := txn.Get(Format.Key(""))
		return err
	}); !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("the format record on a nearly full disk: %v; want it not written", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	setFormat(t, dir, "org/ 2\n")
	var fe *FormatError
	if _, err := Open(full); !errors.As(err, &fe) {
		t.Fatalf("a newer format on a nearly full disk: %v; want a FormatError", err)
	}
}
