package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orgscaler/orgscaler/internal/proctest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// scalerProcess is the scaler binary running on its own, so its memory is
// its own.
type scalerProcess struct{ *proctest.Process }

func buildScaler(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "scaler")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/scaler").CombinedOutput(); err != nil {
		b.Fatalf("build the scaler: %v\n%s", err, out)
	}
	return bin
}

func runScaler(b *testing.B, bin, dir string, args ...string) *scalerProcess {
	return &scalerProcess{proctest.Start(b, bin, dir, nil, args...)}
}

// rssMB is the process's resident memory, from /proc.
func (p *scalerProcess) rssMB(b *testing.B) float64 {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.Cmd.Process.Pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range bytes.Split(status, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func (p *scalerProcess) stop(b *testing.B) {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(time.Minute):
		b.Fatal("the scaler did not stop within a minute")
	}
}

// BenchmarkMillionOrgs fills the store with 1M orgs through the API, then
// restarts the scaler: the resident memory with them loaded, and the time
// from start to serving.
func BenchmarkMillionOrgs(b *testing.B) {
	n := size(1_000_000, 5_000)
	bin := buildScaler(b)
	dir := b.TempDir()
	p := runScaler(b, bin, dir, "--max-orgs", strconv.Itoa(2*n))
	conn, err := grpc.NewClient(p.API, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	orgs := orgRequests(n)
	var events atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for events.Load() < int64(n) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	// Each org once: one stream walks the list in steps of 13, so the first
	// n events cover it (n is not a multiple of 13).
	fill := time.Now()
	streamActivity(ctx, pb.NewActivityServiceClient(conn), orgs, 1, 10_000, &events)
	fillTook := time.Since(fill)
	_ = conn.Close()
	filledRSS := p.rssMB(b)
	p.stop(b)
	b.ResetTimer()
	for range b.N {
		q := runScaler(b, bin, dir, "--max-orgs", strconv.Itoa(2*n))
		b.ReportMetric(q.Serving.Sub(q.Started).Seconds(), "restart-to-serving-s")
		b.ReportMetric(q.rssMB(b), "restarted-rss-MB")
		q.stop(b)
	}
	b.ReportMetric(float64(n), "orgs")
	b.ReportMetric(fillTook.Seconds(), "fill-s")
	b.ReportMetric(filledRSS, "filled-rss-MB")
}
