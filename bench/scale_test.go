package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// scalerProcess is the scaler binary running on its own, so its memory is
// its own.
type scalerProcess struct {
	cmd     *exec.Cmd
	api     string
	started time.Time
	serving time.Time
	done    chan struct{}
}

func buildScaler(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "scaler")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/scaler").CombinedOutput(); err != nil {
		b.Fatalf("build the scaler: %v\n%s", err, out)
	}
	return bin
}

func runScaler(b *testing.B, bin, dir string, args ...string) *scalerProcess {
	cmd := exec.Command(bin, append([]string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	p := &scalerProcess{cmd: cmd, done: make(chan struct{}), started: time.Now()}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, API string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "scaler serving" {
				p.serving, p.api = time.Now(), line.API
				close(ready)
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	b.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	select {
	case <-ready:
	case <-p.done:
		b.Fatal("the scaler exited before serving")
	case <-time.After(2 * time.Minute):
		b.Fatal("the scaler did not serve within 2 minutes")
	}
	return p
}

// rssMB is the process's resident memory, from /proc.
func (p *scalerProcess) rssMB(b *testing.B) float64 {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
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
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
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
	conn, err := grpc.NewClient(p.api, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
		b.ReportMetric(q.serving.Sub(q.started).Seconds(), "restart-to-serving-s")
		b.ReportMetric(q.rssMB(b), "restarted-rss-MB")
		q.stop(b)
	}
	b.ReportMetric(float64(n), "orgs")
	b.ReportMetric(fillTook.Seconds(), "fill-s")
	b.ReportMetric(filledRSS, "filled-rss-MB")
}
