package activity

import (
	"context"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Values past Badger's threshold that are rewritten leave stale copies in
// the value log; GC frees them on disk and counts the bytes.
func TestGCReclaimsTheValueLog(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithValueThreshold(1 << 10).
		WithValueLogFileSize(1 << 20).WithMemTableSize(64 << 10).WithNumMemtables(1).WithNumLevelZeroTables(1).WithNumLevelZeroTablesStall(2))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o := testOptions(t, dir)
	o.DB, o.Registerer = db, reg
	s := mustOpen(t, o)
	defer s.Close()
	value := make([]byte, 4<<10)
	for round := range 40 {
		if err := db.Update(func(txn *badger.Txn) error {
			for k := range 64 {
				value[0] = byte(round)
				if err := txn.Set(fmt.Appendf(nil, "hist/test/%02d", k), value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	before := vlogBytes(dir)
	if err := s.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	reclaimed := testutil.ToFloat64(s.metrics.gcReclaimed)
	t.Logf("value log %d bytes before GC, %d after; %v reclaimed in %v rewrites", before, vlogBytes(dir), reclaimed, testutil.ToFloat64(s.metrics.gcRewrites))
	if reclaimed <= 0 || vlogBytes(dir) >= before {
		t.Fatalf("GC reclaimed %v bytes (value log %d -> %d); want some", reclaimed, before, vlogBytes(dir))
	}
}
