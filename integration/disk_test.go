package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/app"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// smallFS mounts a tmpfs of size MiB for the test, or skips where the test
// may not mount (not root, no CAP_SYS_ADMIN).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small filesystem here (%v: %s): run as root to test a full disk", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill leaves about leave bytes free on the filesystem of dir.
func fill(t *testing.T, dir string, leave uint64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := st.Bavail * uint64(st.Bsize)
	if free <= leave {
		t.Fatalf("only %d bytes free already", free)
	}
	path := filepath.Join(dir, "filler")
	if err := os.WriteFile(path, make([]byte, free-leave), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A nearly full disk stops the writes, never the scaler: answers go on
// from memory, an admin change is refused with Unavailable saying why, an
// import too, and once space is back everything held in memory is
// written, the import's orgs included.
func TestDiskNearlyFull(t *testing.T) {
	fs := smallFS(t, "96m")
	o := options(t, filepath.Join(fs, "data"))
	o.MinFreeDiskMB, o.FlushInterval = 16, 50*time.Millisecond
	d := start(t, o)
	ctx := context.Background()
	if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "before"}); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, fs, 8<<20)

	if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "during"}); err != nil {
		t.Fatalf("activity is taken in memory while the disk is full: %v", err)
	}
	if active, _ := answer(t, d, pynode("during")); !active {
		t.Fatal("KEDA's answers go on from memory")
	}
	on := false
	_, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "before", ScaleToZeroAllowed: &on})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "MiB free") || !strings.Contains(err.Error(), "--min-free-disk-mb") {
		t.Fatalf("an admin change on a full disk: want Unavailable saying why, got %v", err)
	}
	if r, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "before"}); err != nil || !r.GetOrg().GetScaleToZeroAllowed() {
		t.Fatalf("a refused change must not be in force: %v %v", r, err)
	}
	// An import on a full disk is refused as not saved, yet in force here
	// (as activity is): it reaches the disk once space is back.
	imp, err := d.orgs.ImportOrgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = imp.Send(&pb.ImportOrgsRequest{Orgs: []*pb.ImportedOrg{{Line: 2, Org: "imported", LastActivityAt: timestamppb.New(time.Now().Add(-time.Hour))}}})
	if _, err := imp.CloseAndRecv(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not saved") {
		t.Fatalf("an import on a full disk: %v; want Unavailable saying it is not saved", err)
	}
	poll(t, "write errors counted", func() bool { return !strings.Contains(scrape(t, d), "orgscaler_badger_write_errors_total 0") })
	// A pool set on a full disk is refused by name and not in force.
	if _, err := d.orgs.SetPool(ctx, &pb.SetPoolRequest{Pool: "gpus", Gpus: proto.Int64(8)}); status.Code(err) != codes.Unavailable ||
		!strings.Contains(err.Error(), `pool "gpus": not saved`) || !strings.Contains(err.Error(), "MiB free") {
		t.Fatalf("a pool set on a full disk: %v; want Unavailable saying it is not saved, and why", err)
	}
	if _, err := d.orgs.GetPool(ctx, &pb.GetPoolRequest{Pool: "gpus"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a refused pool must not be in force: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "before", ScaleToZeroAllowed: &on}); err != nil {
		t.Fatalf("with space back, the change is saved: %v", err)
	}
	d.stop(t)
	d = start(t, o)
	for _, org := range []string{"before", "during", "imported"} {
		if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: org}); err != nil {
			t.Errorf("%s after a restart: %v", org, err)
		}
	}
}

// A read-only data dir stops the start with an error naming it.
func TestReadOnlyDataDir(t *testing.T) {
	fs := smallFS(t, "8m")
	if err := os.Mkdir(filepath.Join(fs, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", fs).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v %s", err, out)
	}
	_, err := app.New(options(t, filepath.Join(fs, "data")))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(fs, "data")) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("want an error naming the read-only data dir, got %v", err)
	}
}
