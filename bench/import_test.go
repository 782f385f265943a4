package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkImport times a cutover's import end to end: `scalerctl org
// import` of a CSV export of 1M orgs (most dormant for months, some used
// today, a few that never scale to zero), checked whole, sent in chunks
// and applied, synced and counted by the scaler binary as its own
// process. The goal is at most 60 s on 2 cores.
func BenchmarkImport(b *testing.B) {
	n := size(1_000_000, 5_000)
	dir := b.TempDir()
	ctl := filepath.Join(dir, "scalerctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "../cmd/scalerctl").CombinedOutput(); err != nil {
		b.Fatalf("build scalerctl: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "orgs.csv")
	writeExport(b, file, n)
	bin := buildScaler(b)
	b.ResetTimer()
	for range b.N {
		p := runScaler(b, bin, b.TempDir())
		start := time.Now()
		out, err := exec.Command(ctl, "--addr", p.API, "--timeout", "60s", "org", "import", file).CombinedOutput()
		took := time.Since(start)
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("imported %d rows: %d created", n, n)) {
			b.Fatalf("import: %v\n%.500s", err, out)
		}
		b.ReportMetric(took.Seconds(), "import-s")
		b.ReportMetric(float64(n)/took.Seconds(), "rows/s")
		b.ReportMetric(p.rssMB(b), "rss-MB")
		p.stop(b)
	}
	b.ReportMetric(float64(n), "orgs")
}

// writeExport writes n orgs as docs/MIGRATING.md's psql export gives
// them: 90% last used months ago, 9% today, 1% never, every hundredth
// kept warm.
func writeExport(b *testing.B, file string, n int) {
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "org,last_activity_at,scale_to_zero_allowed")
	now := time.Now().UTC()
	for i := range n {
		at := now.Add(-time.Duration(90*24+i%1000) * time.Hour).Format("2006-01-02T15:04:05.000000Z")
		switch i % 100 {
		case 0:
			at = ""
		case 1, 2, 3, 4, 5, 6, 7, 8, 9:
			at = now.Add(-time.Duration(i%600) * time.Minute).Format("2006-01-02T15:04:05.000000Z")
		}
		keep := "t"
		if i%100 == 50 {
			keep = "f"
		}
		fmt.Fprintf(w, "org-%07d,%s,%s\n", i, at, keep)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
