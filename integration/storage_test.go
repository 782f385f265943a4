package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/storage"
)

// Every key a scaler writes, through every store, lies in a space
// storage lists: the list is the whole database.
func TestEveryKeyInAListedSpace(t *testing.T) {
	dir := t.TempDir()
	d := start(t, options(t, dir))
	ctx := context.Background()
	if _, err := d.ctl(t, "activity", "acme", "doomed"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ctl(t, "org", "set", "acme", "--idle-window", "2h", "--warm-schedule", "Mon-Fri 09:00-17:00 UTC"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: "doomed"}); err != nil {
		t.Fatal(err)
	}
	answer(t, d, pynode("acme")) // a ScaledObject's answer: the GPU-hours ledger
	d.stop(t)

	db, err := storage.Open(storage.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seen := map[string]int{}
	if err := db.Badger().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			space := ""
			for _, s := range storage.Spaces {
				if strings.HasPrefix(k, s.Prefix) {
					space = s.Prefix
				}
			}
			if space == "" {
				t.Errorf("key %q is in no space storage lists", k)
			}
			seen[space]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []storage.Space{storage.Orgs, storage.Tombs, storage.Alive, storage.History, storage.UsageHours, storage.Format} {
		if seen[s.Prefix] == 0 {
			t.Errorf("no key in %s (%s): the test wrote one; seen %v", s.Prefix, s.Holds, seen)
		}
	}
}
