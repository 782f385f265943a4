// Package proctest runs the scaler binary as its own process for tests and
// benchmarks, on loopback ports it picks itself, and waits until it serves.
package proctest

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"testing"
	"time"
)

// Process is a running scaler binary.
type Process struct {
	Cmd     *exec.Cmd
	API     string    // the activity and admin API's address
	KEDA    string    // the KEDA port's address
	Started time.Time // when the process was started
	Serving time.Time // when it logged "scaler serving"
	Done    chan struct{}
}

// Start runs bin with its data in dir, loopback ports and JSON logs, plus
// args, and returns once it logs "scaler serving". onLine, when set, sees
// every log line. The process is killed when the test ends.
func Start(t testing.TB, bin, dir string, onLine func(line []byte), args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, Done: make(chan struct{}), Started: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, API, KEDA string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "scaler serving" && p.API == "" {
				p.Serving, p.API, p.KEDA = time.Now(), line.API, line.KEDA
				close(ready)
			}
			if onLine != nil {
				onLine(sc.Bytes())
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.Done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.Done })
	select {
	case <-ready:
	case <-p.Done:
		t.Fatal("the scaler exited before serving")
	case <-time.After(2 * time.Minute):
		t.Fatal("the scaler did not serve within 2 minutes")
	}
	return p
}
