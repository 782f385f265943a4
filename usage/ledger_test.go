package usage

import (
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func openDB(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func pynode(active bool, cause Cause) Answer {
	a := Answer{Kind: "pynode", Org: "acme", GPUs: 1, Active: active, Cause: cause}
	if active {
		a.Replicas = 1
	}
	return a
}

func row(t *testing.T, rows []Row, id string) Figures {
	t.Helper()
	for _, r := range rows {
		if ID(r.ScaledObject, r.Metric) == id {
			return r.Figures
		}
	}
	t.Fatalf("no row for %s in %+v", id, rows)
	return Figures{}
}

// A pynode inactive for an hour, woken by activity for an hour, then idle
// for an hour: one replica-hour used where always-on used three.
func TestLedgerScenario(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	reg := prometheus.NewRegistry()
	l, err := Open(db, Options{Registerer: reg, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for m := time.Duration(0); m <= 180; m += 5 {
		active := m >= 60 && m < 120
		l.Observe(ID("default/pynode-acme", "m"), pynode(active, CauseActivity), at(m*time.Minute))
	}
	// A GPU worker on its backlog: 4 replicas of 2 GPUs for 30 minutes.
	worker := func(replicas int64) Answer {
		return Answer{Kind: "worker", GPUs: 2, GPUType: "l4", Active: replicas > 0, Replicas: replicas, Cause: CauseBacklog}
	}
	for m := time.Duration(0); m < 60; m += 5 {
		l.Observe(ID("gpu/worker", "w"), worker(map[bool]int64{true: 4}[m >= 30]), at(m*time.Minute))
	}
	l.Observe(ID("gpu/worker", "w"), worker(0), at(60*time.Minute))
	// Nobody asked for an hour: only MaxGap of it counts.
	l.Observe(ID("gpu/worker", "w"), worker(0), at(120*time.Minute))

	check := func(l *Ledger) {
		t.Helper()
		from, rows, err := l.Report(at(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if !from.Equal(t0.Add(-time.Hour)) {
			t.Errorf("from = %v, want the start of the hour holding since", from)
		}
		p := row(t, rows, ID("default/pynode-acme", "m"))
		if p.Tracked != 3*time.Hour || p.Active != time.Hour || p.ReplicaTime != time.Hour || p.AlwaysOnReplica != 3*time.Hour ||
			p.GPUTime != time.Hour || p.AlwaysOnGPU != 3*time.Hour || p.Wakes != [causeCount]int64{CauseActivity: 1} || p.Org != "acme" {
			t.Errorf("pynode: got %+v", p)
		}
		w := row(t, rows, ID("gpu/worker", "w"))
		if w.Tracked != 70*time.Minute || w.Active != 30*time.Minute || w.ReplicaTime != 2*time.Hour ||
			w.AlwaysOnReplica != 2*time.Hour+40*time.Minute || w.GPUTime != 4*time.Hour || w.Wakes[CauseBacklog] != 1 {
			t.Errorf("worker: got %+v", w)
		}
		// The last hour alone.
		_, rows, err = l.Report(at(2*time.Hour + 30*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if p := row(t, rows, ID("default/pynode-acme", "m")); p.Tracked != time.Hour || p.Active != 0 || p.AlwaysOnReplica != time.Hour {
			t.Errorf("pynode in the last hour: got %+v", p)
		}
	}
	check(l)
	want := `
# HELP orgscaler_usage_replica_seconds_total Replicas asked for × time (replica-seconds), since the scaler started.
# TYPE orgscaler_usage_replica_seconds_total counter
orgscaler_usage_replica_seconds_total{gpu_type="",kind="pynode",metric="m",org="acme",scaled_object="default/pynode-acme"} 3600
orgscaler_usage_replica_seconds_total{gpu_type="l4",kind="worker",metric="w",org="",scaled_object="gpu/worker"} 7200
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "orgscaler_usage_replica_seconds_total"); err != nil {
		t.Error(err)
	}
	if err := l.Flush(at(3 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	for k := range l.hours {
		if k.hour < at(2*time.Hour).Unix() {
			t.Errorf("after a flush only the hours answers may still fall in stay in memory, got %v", time.Unix(k.hour, 0).UTC())
		}
	}
	check(l)

	// Reopened: the figures are on disk, and a first answer after the
	// restart does not count the downtime.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	defer db.Close()
	l, err = Open(db, Options{Now: func() time.Time { return at(10 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	l.Observe(ID("default/pynode-acme", "m"), pynode(true, CauseHint), at(10*time.Hour))
	check(l)
}

func TestFiguresRoundTrip(t *testing.T) {
	f := Figures{Kind: "model", Org: "acme:eu", GPUs: 8, Tracked: time.Hour, Active: time.Minute, ReplicaTime: 3 * time.Minute,
		AlwaysOnReplica: time.Hour, GPUTime: 24 * time.Minute, AlwaysOnGPU: 8 * time.Hour, Wakes: [causeCount]int64{1, 2, 3, 4}}
	got, err := unmarshal(f.marshal())
	if err != nil || got != f {
		t.Fatalf("got %+v, %v; want %+v", got, err, f)
	}
	b := f.marshal()
	for i := range b {
		if _, err := unmarshal(b[:i]); err == nil {
			t.Fatalf("a record cut at %d bytes should not read", i)
		}
	}
}
