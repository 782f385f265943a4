package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// scalerctl backup, then scalerctl restore into a scaler with an empty
// data dir, gives the same digest and the same orgs, settings, pools, activity
// history and GPU-hours report; a scaler that holds orgs is refused unless
// --merge; a file that is no backup is refused by name.
func TestBackupAndRestore(t *testing.T) {
	ctx := context.Background()
	o := options(t, t.TempDir())
	o.FlushInterval = 50 * time.Millisecond
	src := start(t, o)
	for _, org := range []string{"acme", "globex", "initech"} {
		if _, err := src.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: org}); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	if _, err := src.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "globex", ScaleToZeroAllowed: &off, IdleWindow: durationOf(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: "initech"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "acme's pynode in the source's GPU-hours ledger, and its history, on disk", func() bool {
		answer(t, src, pynode("acme"))
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := src.orgs.Snapshot(sctx, &pb.SnapshotRequest{Usage: true})
		if err != nil {
			return false
		}
		usage, days := false, false
		for {
			chunk, err := stream.Recv()
			if err != nil {
				return usage && days
			}
			usage, days = usage || len(chunk.GetUsage()) > 0, days || len(chunk.GetHistory()) > 0
		}
	})
	if _, err := src.ctl(t, "pool", "set", "gpus", "--gpus", "8", "--wake-rate", "2/30s"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "orgscaler.backup")
	out, err := src.ctl(t, "backup", file)
	if err != nil || !strings.Contains(out, "wrote "+file+": 2 orgs") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	digest, _ := src.ctl(t, "digest")

	dst := start(t, options(t, t.TempDir()))
	out, err = dst.ctl(t, "restore", file)
	if err != nil || !strings.Contains(out, "2 orgs") || !strings.Contains(out, "(the same as the backup's)") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if again, _ := dst.ctl(t, "digest"); strings.Fields(again)[0] != strings.Fields(digest)[0] {
		t.Fatalf("digest after the restore %q; the source's %q", again, digest)
	}
	g, err := dst.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "globex"})
	if err != nil || g.GetOrg().GetScaleToZeroAllowed() || g.GetOrg().GetIdleWindow().AsDuration() != 2*time.Hour {
		t.Fatalf("globex after the restore: %v, %v; want its settings", g, err)
	}
	if p, err := dst.orgs.GetPool(ctx, &pb.GetPoolRequest{Pool: "gpus"}); err != nil || p.GetPool().GetGpus() != 8 || p.GetPool().GetWakeCount() != 2 {
		t.Fatalf("the pool after the restore: %v, %v; want 8 GPUs at 2/30s", p, err)
	}
	if _, err := dst.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "initech"}); err == nil {
		t.Fatal("initech, deleted before the backup, is back")
	}
	if a, b := historyOf(t, src), historyOf(t, dst); a == "" || a != b {
		t.Fatalf("today's activity history: the source's %q, the restored %q", a, b)
	}
	r, err := dst.orgs.Report(ctx, &pb.ReportRequest{Since: durationOf(time.Hour)})
	if err != nil || len(r.GetWorkloads()) != 1 || r.GetWorkloads()[0].GetScaledObject() != "orgs/pynode-acme" {
		t.Fatalf("the restored ledger: %v, %v; want acme's pynode", r, err)
	}

	if out, err := dst.ctl(t, "restore", file); err == nil || !strings.Contains(err.Error(), "holds 2 orgs") {
		t.Fatalf("a second restore into a scaler with orgs: %v\n%s; want it refused", err, out)
	}
	if out, err := dst.ctl(t, "restore", file, "--merge"); err != nil || !strings.Contains(out, "the same as the backup's") {
		t.Fatalf("restore --merge of the same backup: %v\n%s", err, out)
	}
	if _, err := dst.ctl(t, "restore", filepath.Join("..", "README.md")); err == nil || !strings.Contains(err.Error(), "is not a scalerctl backup") {
		t.Fatalf("restoring the README: %v", err)
	}
}

// historyOf is a scaler's activity history of today, as text.
func historyOf(t *testing.T, d *daemon) string {
	t.Helper()
	stream, err := d.orgs.History(context.Background(), &pb.HistoryRequest{Day: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		chunk, err := stream.Recv()
		if err != nil {
			return strings.Join(out, ";")
		}
		for _, day := range chunk.GetDays() {
			out = append(out, fmt.Sprintf("%s:%x", day.GetOrg(), day.GetMinutes()))
		}
	}
}
