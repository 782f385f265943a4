package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// exportCSV writes an org table as docs/MIGRATING.md's psql export gives
// it: a header, booleans as t and f, no last activity as an empty field.
func exportCSV(t *testing.T, rows ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "orgs.csv")
	body := "org,last_activity_at,scale_to_zero_allowed\n" + strings.Join(rows, "\n") + "\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// The cutover: `scalerctl org import` of the cron-era org table makes
// every org dormant for months answer inactive at KEDA's first poll of its
// pynode, while orgs used within their window and orgs that never scale to
// zero stay up; a dry run first changes nothing; importing again changes
// nothing; the imported state reaches the other replica.
func TestImportCutover(t *testing.T) {
	fleet := startFleet(t, 2, func(o *app.Options) { o.UnseenOrgs = app.UnseenDormant })
	d := fleet[0]
	now := time.Now().UTC()
	stamp := func(ago time.Duration) string { return now.Add(-ago).Format("2006-01-02T15:04:05.000000Z") }
	file := exportCSV(t,
		"acme,"+stamp(3*time.Hour)+",t",
		"initech,"+stamp(120*24*time.Hour)+",t",
		"globex,"+stamp(200*24*time.Hour)+",f",
		"hooli,,t",
	)
	out, err := d.ctl(t, "org", "import", file, "--dry-run")
	if err != nil || !strings.Contains(out, "dry run, nothing changed; would import 4 rows: 4 created, 0 updated, 0 unchanged; 2 dormant after") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if _, err := d.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "initech"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after a dry run initech: %v; want NotFound", err)
	}
	out, err = d.ctl(t, "org", "import", file)
	if err != nil || !strings.Contains(out, "imported 4 rows: 4 created") || !strings.Contains(out, "line 3: initech: created, dormant") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	for _, r := range fleet {
		for org, want := range map[string]bool{"acme": true, "initech": false, "globex": true, "hooli": false} {
			poll(t, fmt.Sprintf("%s's pynode on a replica answers active=%v", org, want), func() bool {
				a, err := r.keda.IsActive(context.Background(), pynode(org))
				return err == nil && a.GetResult() == want
			})
		}
	}
	// The other replica holds what was imported, not what its own
	// triggers made: initech's last activity is the export's.
	poll(t, "initech's imported last activity on the other replica", func() bool {
		o, err := fleet[1].orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "initech"})
		return err == nil && o.GetOrg().GetLastActivity().AsTime().Format("2006-01-02T15:04:05.000000Z") == stamp(120*24*time.Hour)
	})
	// --unseen-orgs=dormant: an org no import named is at zero from its
	// trigger's first poll.
	if a, err := d.keda.IsActive(context.Background(), pynode("umbrella")); err != nil || a.GetResult() {
		t.Fatalf("umbrella, named first by a trigger: active=%v, %v; want inactive", a.GetResult(), err)
	}
	if out, err := d.ctl(t, "org", "import", file); err != nil || !strings.Contains(out, "imported 4 rows: 0 created, 0 updated, 4 unchanged") {
		t.Fatalf("importing again: %v\n%s", err, out)
	}
}

// A bad row is named by its file, line and field, and nothing of the file
// is imported; so is an unknown column.
func TestImportRefusesABadFile(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	for _, c := range []struct{ body, want string }{
		{"org,last_activity_at\nacme,2026-01-02T03:04:05Z\nbad org!,\n", `:3: org is "bad org!"`},
		{"org,last_activity_at\nacme,yesterday\n", `:2: last_activity_at is "yesterday": expected an RFC 3339 instant`},
		{"org,plan\nacme,pro\n", `:1: unknown column "plan"`},
		{"org,warm_schedule\nacme,Mon-Fri 25:00-26:00 UTC\n", `:2: warm_schedule is "Mon-Fri 25:00-26:00 UTC"`},
		{`{"org":"acme","idle_window":"2h"}` + "\n" + `{"org":"b","idle_window":7200}` + "\n", `:2: idle_window is 7200: expected a string`},
		{"org,idle_window\nacme,500ms\n", `:2: idle_window is "500ms": expected a duration from 1s`},
		{"org,last_activity_at\nacme,2099-01-01T00:00:00Z\n", `:2: last_activity_at is "2099-01-01T00:00:00Z", in the future`},
		{"org\nacme\nglobex\nacme\n", `:4: org "acme" is on line 2 already`},
	} {
		file := filepath.Join(t.TempDir(), "orgs")
		if err := os.WriteFile(file, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := d.ctl(t, "org", "import", file); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v\n%s; want an error with %q", c.body, err, out, c.want)
		}
	}
	if _, err := d.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "acme"}); status.Code(err) != codes.NotFound {
		t.Fatalf("acme after refused imports: %v; want NotFound", err)
	}
	// The API checks each chunk whole: a refusal in the second leaves the
	// first applied and nothing of the second, and names the line.
	two, err := d.orgs.ImportOrgs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = two.Send(&pb.ImportOrgsRequest{Orgs: []*pb.ImportedOrg{{Line: 2, Org: "first-chunk"}}})
	_ = two.Send(&pb.ImportOrgsRequest{Orgs: []*pb.ImportedOrg{{Line: 3, Org: "second-chunk"}, {Line: 4, Org: "Bad Org"}}})
	if _, err := two.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "line 4: org") || !strings.Contains(err.Error(), "the 1 rows before it are imported") {
		t.Fatalf("a bad row in the second chunk: %v; want InvalidArgument naming line 4 and the row imported before it", err)
	}
	if _, err := d.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "first-chunk"}); err != nil {
		t.Fatalf("the first chunk: %v; want it imported", err)
	}
	if _, err := d.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "second-chunk"}); status.Code(err) != codes.NotFound {
		t.Fatalf("the second chunk's good row: %v; want nothing of a refused chunk", err)
	}
	// The API itself refuses a far-future instant, naming the line.
	stream, err := d.orgs.ImportOrgs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&pb.ImportOrgsRequest{Orgs: []*pb.ImportedOrg{{Line: 7, Org: "acme", LastActivityAt: timestamppb.New(time.Now().Add(time.Hour))}}})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "line 7: last_activity_at") {
		t.Fatalf("a future last activity: %v; want InvalidArgument naming line 7", err)
	}
}

// A producer can send activity it had queued: at within the window
// counts at that instant; one in the future or older than the window is
// refused naming the field.
func TestRecordActivityAt(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	ctx := context.Background()
	at := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	resp, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme", At: timestamppb.New(at)})
	if err != nil || !resp.GetOrg().GetLastActivity().AsTime().Equal(at) {
		t.Fatalf("activity 2h ago: %v, last activity %v; want %v", err, resp.GetOrg().GetLastActivity().AsTime(), at)
	}
	for _, bad := range []time.Time{time.Now().Add(time.Hour), time.Now().Add(-48 * time.Hour)} {
		if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme", At: timestamppb.New(bad)}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at is ") {
			t.Errorf("at %v: %v; want InvalidArgument naming at", bad, err)
		}
	}
}

// With replication's Pub/Sub paused (the emulator SIGSTOPped), an import
// is taken here, in force at once, and answered Unavailable within
// --replication-wait saying how many rows are imported here; once Pub/Sub
// is back, the other replica has them, and importing again is safe.
func TestImportWhilePubSubPaused(t *testing.T) {
	em := pubsubtest.Start(t)
	fleet := startFleetOn(t, em, 2, func(o *app.Options) { o.ReplicationWait = time.Second })
	a, b := fleet[0], fleet[1]
	file := exportCSV(t, "acme,"+time.Now().UTC().Add(-100*24*time.Hour).Format(time.RFC3339)+",f")
	em.Pause(t)
	out, err := a.ctl(t, "org", "import", file)
	em.Resume(t)
	if err == nil || !strings.Contains(err.Error(), "the 1 rows read so far are imported here but not yet replicated") || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("an import with Pub/Sub paused: %v\n%s; want Unavailable saying the row is imported here", err, out)
	}
	if o, err := a.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "acme"}); err != nil || o.GetOrg().GetScaleToZeroAllowed() {
		t.Fatalf("acme on the replica that took the import: %v, %v; want it in force", o, err)
	}
	poll(t, "acme's imported setting on the other replica once Pub/Sub is back", func() bool {
		o, err := b.orgs.GetOrg(context.Background(), &pb.GetOrgRequest{Org: "acme"})
		return err == nil && !o.GetOrg().GetScaleToZeroAllowed()
	})
	if out, err := a.ctl(t, "org", "import", file); err != nil || !strings.Contains(out, "1 unchanged") {
		t.Fatalf("importing again: %v\n%s", err, out)
	}
}
