package integration

import (
	"context"
	"strings"
	"testing"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// scalerctl digest names the state: the same across a restart, different
// once an org changes.
func TestDigest(t *testing.T) {
	o := options(t, t.TempDir())
	o.ReplicaID = "scaler-0"
	d := start(t, o)
	ctx := context.Background()
	for _, org := range []string{"acme", "globex"} {
		if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: org}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := d.ctl(t, "digest")
	if err != nil || !strings.Contains(first, "  2 orgs  (replica scaler-0)") || len(strings.Fields(first)[0]) != 64 {
		t.Fatalf("scalerctl digest: %q %v", first, err)
	}
	d.stop(t)
	d = start(t, o)
	if again, _ := d.ctl(t, "digest"); again != first {
		t.Fatalf("across a restart: %q, then %q", first, again)
	}
	off := false
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	if changed, _ := d.ctl(t, "digest"); changed == first {
		t.Fatal("a changed org must change the digest")
	}
}
