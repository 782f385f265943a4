package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/certtest"
	"github.com/orgscaler/orgscaler/internal/proctest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// A plaintext KEDA port on an address other hosts can reach, with no
// client certificates required, is refused at start, naming the flags
// that fix it; --keda-insecure says it is fenced off another way.
func TestKEDAPortRefusesToListenOpenly(t *testing.T) {
	cmd := exec.Command(scalerBin, "--data-dir", t.TempDir(), "--listen", "0.0.0.0:0", "--api-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v\n%s", err, out)
	}
	for _, want := range []string{"--listen 0.0.0.0:0 is reachable from other hosts", "--tls-client-ca", "--keda-insecure"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal lacks %q:\n%s", want, out)
		}
	}
	o := options(t, t.TempDir())
	o.Listen, o.KEDAInsecure = "0.0.0.0:0", true
	a, err := app.New(o)
	if err != nil {
		t.Fatalf("--keda-insecure: %v", err)
	}
	_ = a.Close()
}

// dirSize is the disk space every file under dir takes (Badger's files
// are sparse: their apparent size says nothing).
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An anonymous client inventing names on the KEDA port of the embedded
// default cannot grow the orgs past --max-orgs: past it, ResourceExhausted
// naming the limit, and nothing more is kept or written.
func TestInventedNamesAreBounded(t *testing.T) {
	dir := t.TempDir()
	p := proctest.Start(t, scalerBin, dir, nil, "--max-orgs", "50")
	conn, err := grpc.NewClient(p.KEDA, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keda := kedapb.NewExternalScalerClient(conn)
	ctx := context.Background()
	refused := 0
	for i := range 2000 {
		ref := &kedapb.ScaledObjectRef{Name: fmt.Sprintf("so-%d", i), Namespace: "evil",
			ScalerMetadata: map[string]string{"workload": "pynode", "org": fmt.Sprintf("invented-%d", i)}}
		_, err := keda.GetMetricSpec(ctx, ref)
		switch {
		case err == nil:
		case status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "limit of 50 orgs (--max-orgs)"):
			refused++
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if refused != 1950 {
		t.Fatalf("want 1950 of 2000 invented orgs refused, got %d", refused)
	}
	apiConn, err := grpc.NewClient(p.API, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer apiConn.Close()
	list, err := pb.NewAdminServiceClient(apiConn).ListOrgs(ctx, &pb.ListOrgsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetOrgs()); n != 50 {
		t.Fatalf("want 50 orgs kept, got %d", n)
	}
	if size := dirSize(t, dir); size > 1<<20 {
		t.Fatalf("data dir takes %d KiB after the flood: more than 50 orgs need", size>>10)
	}
}

// One connection cannot hold more streams open than --max-streams-per-conn:
// the next waits, and gets in once one closes.
func TestStreamsPerConnectionAreBounded(t *testing.T) {
	o := options(t, t.TempDir())
	o.MaxStreamsPerConn = 2
	d := start(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 {
		s, err := d.keda.StreamIsActive(ctx, pynode(fmt.Sprintf("org-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil { // new orgs are active: one push each
			t.Fatal(err)
		}
	}
	third, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	s, err := d.keda.StreamIsActive(third, pynode("org-2"))
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a third stream on the connection: want it held back, got %v", err)
	}
	cancel() // closes both streams: the connection has room again
	deadline := time.Now().Add(10 * time.Second)
	for {
		next, stopNext := context.WithTimeout(context.Background(), time.Second)
		s, err := d.keda.StreamIsActive(next, pynode("org-2"))
		if err == nil {
			_, err = s.Recv()
		}
		stopNext()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream once the others closed: %v", err)
		}
	}
}

// An admin deletes an org: gone from memory and disk (a restart does not
// bring it back); a trigger that names it again gets a new, active org with
// default settings; an open stream recreates it at once.
func TestDeleteOrg(t *testing.T) {
	dir := t.TempDir()
	o := options(t, dir)
	d := start(t, o)
	ctx := context.Background()
	off := false
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "gone", ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "watched", ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	out, err := d.ctl(t, "org", "delete", "gone")
	if err != nil || !strings.Contains(out, "deleted gone") {
		t.Fatalf("scalerctl org delete: %v\n%s", err, out)
	}
	if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "gone"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after delete: want NotFound, got %v", err)
	}
	if _, err := d.orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: "gone"}); status.Code(err) != codes.NotFound {
		t.Fatalf("deleting it again: want NotFound, got %v", err)
	}
	stream, err := d.keda.StreamIsActive(ctx, pynode("watched"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	resp, err := d.orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: "watched"})
	if err != nil || resp.GetOpenStreams() != 1 || resp.GetOrg().GetScaleToZeroAllowed() {
		t.Fatalf("delete of a watched org: want 1 open stream and the old settings, got %v %v", resp, err)
	}
	poll(t, "the open stream recreates the org as new", func() bool {
		got, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "watched"})
		return err == nil && got.GetOrg().GetScaleToZeroAllowed() && got.GetOrg().GetState() == pb.Org_STATE_ACTIVE
	})
	d.stop(t)
	d = start(t, o)
	if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "gone"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after a restart: want still NotFound, got %v", err)
	}
	if active, _ := answer(t, d, pynode("gone")); !active {
		t.Fatal("a trigger naming a deleted org: want a new, active org")
	}
	got, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "gone"})
	if err != nil || !got.GetOrg().GetScaleToZeroAllowed() {
		t.Fatalf("recreated with default settings: got %v %v", got, err)
	}
}

// With a cluster configured but not (yet) readable, the KEDA port is not
// ready and answers nothing rather than guess: Unavailable, so KEDA's
// fallback engages.
func TestKEDAPortNotReadyUntilScaledObjectsAreRead(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	certtest.WriteFile(t, kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`))
	o := options(t, t.TempDir())
	o.Kubeconfig = kubeconfig
	d := start(t, o)
	health := healthpb.NewHealthClient(d.dial(t, d.app.Addr()))
	ctx := context.Background()
	poll(t, "health reported", func() bool {
		h, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	_, err := d.keda.IsActive(ctx, pynode("acme"))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not yet read every ScaledObject") {
		t.Fatalf("before the ScaledObjects are read: want Unavailable, got %v", err)
	}
	if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a refused call must create no org: %v", err)
	}
	if h, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "liveness"}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("liveness must stay SERVING: %v %v", h, err)
	}
}

// KEDA's connections age out, and its streams end cleanly first (KEDA
// resets its reconnect backoff only after a clean end), so its client
// re-resolves the address and finds the replicas there are now.
func TestStreamsEndCleanlyWithTheirConnectionsAge(t *testing.T) {
	o := options(t, t.TempDir())
	o.KEDAMaxConnectionAge = time.Second
	d := start(t, o)
	stream, err := d.keda.StreamIsActive(context.Background(), pynode("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // a new org is active: pushed on open
		t.Fatal(err)
	}
	began := time.Now()
	ended := make(chan error, 1)
	go func() { _, err := stream.Recv(); ended <- err }()
	select {
	case err := <-ended:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("the stream must end cleanly (io.EOF), got %v", err)
		}
		t.Logf("stream ended cleanly after %s", time.Since(began).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its connection's age")
	}
	if active, _ := answer(t, d, pynode("acme")); !active {
		t.Fatal("calls go on over a new connection")
	}
}
