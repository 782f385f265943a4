package storage

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
	d, err := Open(Options{Dir: dir, Registerer: prometheus.NewRegistry(), tune: func(o badger.Options) badger.Options {
		return o.WithLogger(nil).WithValueLogFileSize(1 << 20).WithMemTableSize(64 << 10).WithNumMemtables(1).
			WithNumLevelZeroTables(1).WithNumLevelZeroTablesStall(2)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	value := make([]byte, 4<<10)
	for round := range 40 {
		if err := d.Badger().Update(func(txn *badger.Txn) error {
			for k := range 64 {
				value[0] = byte(round)
				if err := txn.Set(History.Key(fmt.Sprintf("test/%02d", k)), value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Badger().Flatten(1); err != nil {
		t.Fatal(err)
	}
	before := vlogBytes(dir)
	if err := d.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	reclaimed := testutil.ToFloat64(d.metrics.gcReclaimed)
	t.Logf("value log %d bytes before GC, %d after; %v reclaimed in %v rewrites", before, vlogBytes(dir), reclaimed, testutil.ToFloat64(d.metrics.gcRewrites))
	if reclaimed <= 0 || vlogBytes(dir) >= before {
		t.Fatalf("GC reclaimed %v bytes (value log %d -> %d); want some", reclaimed, before, vlogBytes(dir))
	}
}
