package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/certtest"
	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Every metric the shipped Grafana dashboard and alerts query is one the
// scaler exports: after real traffic (Monitoring up, then down), /metrics carries
// each name, so no panel is silently empty.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	dash, err := os.ReadFile(filepath.Join("..", "deploy", "helm", "orgscaler", "dashboards", "orgscaler-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The shipped alerts too, but those only a fleet exports (e2e's
	// TestFleetCountsOnce checks them there).
	rules, err := os.ReadFile(filepath.Join("..", "deploy", "helm", "orgscaler", "alerts", "orgscaler.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fleetOnly := regexp.MustCompile(`^orgscaler_(leader|replication_.*)$`)
	names := map[string]bool{}
	for _, n := range regexp.MustCompile(`\b(orgscaler_[a-z_]+|grpc_server_[a-z_]+)\b`).FindAllString(string(dash)+string(rules), -1) {
		names[n] = !fleetOnly.MatchString(n)
	}
	if len(names) < 10 {
		t.Fatalf("the dashboard queries only %d metrics: %v", len(names), names)
	}

	ms := monitoringtest.Start(t)
	checked := subscriptionCheck(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	certtest.WriteFile(t, tokens, []byte(adminToken+" admin\n"))
	o := options(t, t.TempDir())
	o.PubSub, o.MonitoringEndpoint, o.MonitoringInsecure = app.PubSubMonitoring, ms.Addr, true
	o.DepthRefresh, o.DepthMaxAge, o.APITokensFile = 100*time.Millisecond, time.Second, tokens
	d := start(t, o)
	sub := "projects/proj-a/subscriptions/jobs"
	pubsubtest.Create(t, pubsubtest.Client(t, checked, "proj-a"), sub)
	ms.Set(sub, 3, time.Now())

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adminToken)
	if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.act.Hint(ctx, &pb.HintRequest{Subscription: sub, Messages: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", IdleWindow: durationOf(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.act.RecordActivity(context.Background(), &pb.RecordActivityRequest{Org: "acme"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	seen := map[string]bool{}
	note := func() {
		for _, line := range strings.Split(scrape(t, d), "\n") {
			if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
				seen[name] = true
			} else if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
				seen[name] = true
			}
		}
	}
	poll(t, "the worker answered from a Monitoring point", func() bool {
		_, _, err := state(d, worker(sub, 1))
		_, _ = d.keda.IsActive(context.Background(), pynode("acme"))
		return err == nil
	})
	poll(t, "acme dormant", func() bool {
		_, _ = d.keda.IsActive(context.Background(), pynode("acme"))
		note()
		return seen["orgscaler_org_transitions_total"]
	})
	ms.SetFail(status.Error(codes.Unavailable, "monitoring is down"))
	poll(t, "the subscription blind", func() bool { note(); return seen["orgscaler_depth_unknown"] })
	var missing []string
	for n, here := range names {
		if here && !seen[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the dashboard queries metrics /metrics never showed: %v", missing)
	}
}
