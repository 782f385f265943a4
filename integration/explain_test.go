package integration

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Explain comes from the same evaluation as KEDA's answers, so the two
// agree, and it shows every input.
func TestExplain(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	ctx := context.Background()
	if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	active, replicas := answer(t, d, pynode("acme")) // KEDA asks about orgs/pynode-acme
	e, err := d.orgs.Explain(ctx, &pb.ExplainRequest{ScaledObject: "orgs/pynode-acme"})
	if err != nil {
		t.Fatal(err)
	}
	if e.GetActive() != active || float64(e.GetReplicas()) != replicas || e.GetRule() != "warm" ||
		e.GetWindowSource() != "default" || e.GetOrg().GetId() != "acme" || e.GetNextChange() == nil || e.GetError() != "" {
		t.Fatalf("explain disagrees with KEDA's answer (%v, %v) or lacks an input: %v", active, replicas, e)
	}
	e, err = d.orgs.Explain(ctx, &pb.ExplainRequest{Metadata: map[string]string{"workload": "model", "org": "acme", "warmFor": "1h"}})
	if err != nil || e.GetWindowSource() != "warmFor" || e.GetWindow().AsDuration().String() != "1h0m0s" {
		t.Fatalf("warmFor window: %v %v", e, err)
	}
	out, err := d.ctl(t, "explain", "orgs/pynode-acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"active, 1 replica", "rule", "warm: org acme was active", "the scaler's --idle-window", "next change"} {
		if !strings.Contains(out, want) {
			t.Errorf("scalerctl explain lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []struct {
		req  *pb.ExplainRequest
		code codes.Code
		want string
	}{
		{&pb.ExplainRequest{ScaledObject: "orgs/never-asked"}, codes.NotFound, "orgs/never-asked"},
		{&pb.ExplainRequest{ScaledObject: "no-namespace"}, codes.InvalidArgument, "NAMESPACE/NAME"},
		{&pb.ExplainRequest{Metadata: map[string]string{"workload": "pynode"}}, codes.InvalidArgument, `"org"`},
		{&pb.ExplainRequest{}, codes.InvalidArgument, "metadata is empty"},
	} {
		_, err := d.orgs.Explain(ctx, bad.req)
		if status.Code(err) != bad.code || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: want %s with %q, got %v", bad.req, bad.code, bad.want, err)
		}
	}
}

// A trigger with a keep-alive policy is explained by its plan: the
// policy, what it learned from, what it keeps and when it pre-warms. The
// org's idle times are counted from its activity, and go with the org.
func TestExplainKeepAlive(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	ctx := context.Background()
	md := map[string]string{"workload": "model", "org": "acme", "keepAlive": "learned", "coldStart": "3m"}
	e, err := d.orgs.Explain(ctx, &pb.ExplainRequest{Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	k := e.GetKeepAlive()
	if !e.GetActive() || e.GetRule() != "keep-alive" || k.GetPolicy() != "learned" || k.GetMinWarm().AsDuration().String() != "6m0s" ||
		k.GetKeepFor().AsDuration().String() != "35m0s" || k.GetIdleTimes() != 0 || k.GetNextPrewarm() != nil || e.GetWindow() != nil {
		t.Fatalf("a new org's learned model: want kept up for a cold start's price, nothing learned yet: %v", e)
	}
	out, err := d.ctl(t, "explain", "--meta", "workload=model,org=acme,keepAlive=learned,coldStart=3m")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keep-alive     learned, cold start 3m0s, minWarm 6m0s, from 0 idle times", "up 35m0s after each activity: no idle times known yet", "next pre-warm  none ahead"} {
		if !strings.Contains(out, want) {
			t.Errorf("scalerctl explain lacks %q:\n%s", want, out)
		}
	}
	md["coldStart"] = "soon"
	if _, err := d.orgs.Explain(ctx, &pb.ExplainRequest{Metadata: md}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"coldStart" is "soon"`) {
		t.Fatalf("bad coldStart: %v; want InvalidArgument naming it", err)
	}
}
