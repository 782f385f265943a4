package integration

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/app"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

func scrape(t *testing.T, d *daemon) string {
	t.Helper()
	resp, err := http.Get("http://" + d.app.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// What Prometheus sees after a little use: gRPC server metrics for both
// ports, and ours.
func TestMetrics(t *testing.T) {
	o := options(t, t.TempDir())
	o.PubSub, o.PubSubListen, o.DepthRefresh = app.PubSubEmbedded, "127.0.0.1:0", 100*time.Millisecond
	d := start(t, o)
	ctx := context.Background()
	for range 3 {
		if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.keda.IsActive(ctx, pynode("acme")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.act.Hint(ctx, &pb.HintRequest{Subscription: "projects/demo/subscriptions/jobs", Messages: 4}); err != nil {
		t.Fatal(err)
	}
	m := scrape(t, d)
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="IsActive",grpc_service="externalscaler.ExternalScaler",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="RecordActivity",grpc_service="orgscaler.v1.ActivityService",grpc_type="unary"} 3`,
		`grpc_server_handling_seconds_bucket{grpc_method="IsActive"`,
		`orgscaler_orgs{state="active"} 1`,
		`orgscaler_activity_events_total 3`,
		`orgscaler_answers_total{kind="pynode",result="active"} 1`,
		`orgscaler_hints_in_force{subscription="projects/demo/subscriptions/jobs"} 4`,
		`orgscaler_open_streams 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Dormancy moves the org between states.
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", IdleWindow: durationOf(time.Second)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "acme dormant in the metrics", func() bool {
		m := scrape(t, d)
		return strings.Contains(m, `orgscaler_orgs{state="dormant"} 1`) && strings.Contains(m, `orgscaler_orgs{state="active"} 0`) &&
			strings.Contains(m, `orgscaler_org_transitions_total{direction="dormant"} 1`)
	})
}
