// Package integration boots the whole scaler in-process on 127.0.0.1:0 and
// drives it the way KEDA and operators do: KEDA's generated client on one
// port, the scalerctl binary and our API client on the other.
package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orgscaler/orgscaler/app"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// The binaries built for these tests.
var scalerctl, scalerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scalerctl")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scalerctl, scalerBin = filepath.Join(dir, "scalerctl"), filepath.Join(dir, "scaler")
	for bin, pkg := range map[string]string{scalerctl: "../cmd/scalerctl", scalerBin: "../cmd/scaler"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one running scaler.
type daemon struct {
	app    *app.App
	keda   kedapb.ExternalScalerClient
	orgs   pb.AdminServiceClient
	act    pb.ActivityServiceClient
	conns  []*grpc.ClientConn
	cancel context.CancelFunc
	done   chan error
}

func options(t *testing.T, dataDir string) app.Options {
	return app.Options{
		Listen: "127.0.0.1:0", APIListen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", DataDir: dataDir,
		IdleWindow: 24 * time.Hour, FlushInterval: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func start(t *testing.T, o app.Options) *daemon {
	t.Helper()
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())
	return startWith(t, o, []grpc.DialOption{plain}, []grpc.DialOption{plain})
}

// startWith starts a daemon whose clients dial KEDA's port with keda and
// the API with api.
func startWith(t *testing.T, o app.Options, keda, api []grpc.DialOption) *daemon {
	t.Helper()
	a, err := app.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{app: a, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- a.Run(ctx) }()
	d.keda = kedapb.NewExternalScalerClient(d.dial(t, a.Addr(), keda...))
	apiConn := d.dial(t, a.APIAddr(), api...)
	d.orgs, d.act = pb.NewAdminServiceClient(apiConn), pb.NewActivityServiceClient(apiConn)
	t.Cleanup(func() { d.stop(t) })
	return d
}

// dial connects to addr, in plaintext unless opts say otherwise.
func (d *daemon) dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	d.conns = append(d.conns, c)
	return c
}

// stop shuts the daemon down as SIGTERM does, and waits for it.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	if err := <-d.done; err != nil {
		t.Errorf("scaler stopped with an error: %v", err)
	}
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// ctl runs the scalerctl binary against d's API and returns its stdout.
func (d *daemon) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(scalerctl, append([]string{"--addr", d.app.APIAddr()}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.String(), nil
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	pollFor(t, 10*time.Second, what, cond)
}

func newApp(o app.Options) (*app.App, error) { return app.New(o) }

func corruptEveryFile(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func durationOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
