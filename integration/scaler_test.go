package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// The README's example trigger for a pynode.
func pynode(org string) *kedapb.ScaledObjectRef {
	return &kedapb.ScaledObjectRef{Name: "pynode-" + org, Namespace: "orgs", ScalerMetadata: map[string]string{
		"scalerAddress": "orgscaler.keda:9090", "workload": "pynode", "org": org,
	}}
}

func answer(t *testing.T, d *daemon, ref *kedapb.ScaledObjectRef) (bool, float64) {
	t.Helper()
	ctx := context.Background()
	spec, err := d.keda.GetMetricSpec(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.keda.GetMetrics(ctx, &kedapb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.GetMetricSpecs()[0].GetMetricName()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.keda.IsActive(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return a.GetResult(), m.GetMetricValues()[0].GetMetricValueFloat()
}

// The "done when": an org that just had activity answers active
// with 1 replica and inactive once its window has passed; a restart changes
// neither; a stream held open on the dormant org gets true the moment
// `scalerctl activity ORG` runs.
func TestNewcomerWalkthrough(t *testing.T) {
	dir := t.TempDir()
	d := start(t, options(t, dir))
	if _, err := d.ctl(t, "activity", "acme", "sleepy"); err != nil {
		t.Fatal(err)
	}
	if active, replicas := answer(t, d, pynode("acme")); !active || replicas != 1 {
		t.Fatalf("acme just had activity: want active with 1 replica, got %v %v", active, replicas)
	}
	// sleepy gets a 1s window and goes dormant.
	if _, err := d.ctl(t, "org", "set", "sleepy", "--idle-window", "1s"); err != nil {
		t.Fatal(err)
	}
	poll(t, "sleepy dormant", func() bool {
		out, err := d.ctl(t, "org", "get", "sleepy")
		return err == nil && strings.Contains(out, "dormant")
	})
	if active, replicas := answer(t, d, pynode("sleepy")); active || replicas != 0 {
		t.Fatalf("sleepy past its window: want inactive with 0 replicas, got %v %v", active, replicas)
	}

	d.stop(t)
	d = start(t, options(t, dir))
	if active, _ := answer(t, d, pynode("acme")); !active {
		t.Fatal("restart made acme inactive")
	}
	if active, _ := answer(t, d, pynode("sleepy")); active {
		t.Fatal("restart woke sleepy")
	}

	stream, err := d.keda.StreamIsActive(context.Background(), pynode("sleepy"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan bool, 4)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- r.GetResult()
		}
	}()
	// Whether the stream subscribed before or after this activity, it
	// pushes true: a stream answers once on open if active then.
	out, err := d.ctl(t, "activity", "sleepy")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "woke sleepy") {
		t.Fatalf("scalerctl should say it woke sleepy: %q", out)
	}
	select {
	case v := <-got:
		if !v {
			t.Fatal("pushed false")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no push after scalerctl activity")
	}
	if active, replicas := answer(t, d, pynode("sleepy")); !active || replicas != 1 {
		t.Fatalf("sleepy after activity: want active with 1 replica, got %v %v", active, replicas)
	}
}

// SIGTERM (here: the Run context ending) writes every org's latest activity
// before the process exits, though the flush interval has not come.
func TestCleanShutdownFlushes(t *testing.T) {
	dir := t.TempDir()
	d := start(t, options(t, dir))
	ctx := context.Background()
	if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	r, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	last := r.GetOrg().GetLastActivity().AsTime()
	d.stop(t)
	d = start(t, options(t, dir))
	g, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if !g.GetOrg().GetLastActivity().AsTime().Equal(last) {
		t.Fatalf("last activity after restart %v, want %v", g.GetOrg().GetLastActivity().AsTime(), last)
	}
}

func TestAPI(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	ctx := context.Background()

	// Stream of activity; a bad event ends it, the events before it stay.
	s, err := d.act.StreamActivity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"a1", "a2", "a3", "a1"} {
		if err := s.Send(&pb.StreamActivityRequest{Org: org}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.CloseAndRecv()
	if err != nil || resp.GetEvents() != 4 || resp.GetWoken() != 3 {
		t.Fatalf("want 4 events, 3 new orgs; got %v %v", resp, err)
	}
	s, _ = d.act.StreamActivity(ctx)
	_ = s.Send(&pb.StreamActivityRequest{Org: "b1"})
	_ = s.Send(&pb.StreamActivityRequest{})
	if _, err := s.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "event 2: org is missing") {
		t.Fatalf("want InvalidArgument naming event 2, got %v", err)
	}
	if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "b1"}); err != nil {
		t.Fatalf("event before the bad one was lost: %v", err)
	}

	// Pages and filters.
	off := false
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "a2", IdleWindow: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a2 dormant", func() bool {
		o, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "a2"})
		return err == nil && o.GetOrg().GetState() == pb.Org_STATE_DORMANT
	})
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "a3", ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	req := &pb.ListOrgsRequest{PageSize: 2}
	for {
		page, err := d.orgs.ListOrgs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.GetOrgs()) > 2 {
			t.Fatalf("page of %d orgs, asked for 2", len(page.GetOrgs()))
		}
		for _, o := range page.GetOrgs() {
			ids = append(ids, o.GetId())
		}
		if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if strings.Join(ids, ",") != "a1,a2,a3,b1" {
		t.Fatalf("pages gave %v", ids)
	}
	dormant, err := d.orgs.ListOrgs(ctx, &pb.ListOrgsRequest{Filter: pb.ListOrgsRequest_FILTER_DORMANT})
	if err != nil || len(dormant.GetOrgs()) != 1 || dormant.GetOrgs()[0].GetId() != "a2" {
		t.Fatalf("dormant filter: %v %v", dormant, err)
	}
	active, err := d.orgs.ListOrgs(ctx, &pb.ListOrgsRequest{Filter: pb.ListOrgsRequest_FILTER_ACTIVE})
	if err != nil || len(active.GetOrgs()) != 3 {
		t.Fatalf("active filter: %v %v", active, err)
	}

	// Bad input: the right code, a message naming the field, nothing changed.
	before, _ := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "a1"})
	bad := []struct {
		call func() error
		code codes.Code
		want string
	}{
		{func() error { _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "a b"}); return err }, codes.InvalidArgument, `org is "a b"`},
		{func() error { _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "nobody"}); return err }, codes.NotFound, `org "nobody"`},
		{func() error {
			_, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "a1", IdleWindow: durationpb.New(-time.Hour)})
			return err
		}, codes.InvalidArgument, "idle_window is -1h0m0s"},
		{func() error { _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "a1"}); return err }, codes.InvalidArgument, "nothing to change"},
		{func() error { _, err := d.orgs.ListOrgs(ctx, &pb.ListOrgsRequest{PageSize: -1}); return err }, codes.InvalidArgument, "page_size is -1"},
		{func() error { _, err := d.orgs.ListOrgs(ctx, &pb.ListOrgsRequest{PageToken: "zzz"}); return err }, codes.InvalidArgument, `page_token is "zzz"`},
	}
	for i, b := range bad {
		err := b.call()
		if status.Code(err) != b.code || !strings.Contains(status.Convert(err).Message(), b.want) {
			t.Errorf("case %d: want %s with %q, got %v", i, b.code, b.want, err)
		}
	}
	after, _ := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "a1"})
	if before.String() != after.String() {
		t.Fatalf("a rejected call changed a1: %v -> %v", before, after)
	}
}

// grpcurl works with no proto files: health and reflection on both ports.
func TestHealthAndReflection(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	for _, addr := range []string{d.app.Addr(), d.app.APIAddr()} {
		conn := d.dial(t, addr)
		h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s health: %v %v", addr, h, err)
		}
		rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		r, err := rs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range r.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		_ = rs.CloseSend()
		want := "externalscaler.ExternalScaler"
		if addr == d.app.APIAddr() {
			want = "orgscaler.v1.AdminService"
		}
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("%s reflection lists %v, want %s", addr, names, want)
		}
	}
}

func TestScalerctlOutput(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	if _, err := d.ctl(t, "activity", "acme"); err != nil {
		t.Fatal(err)
	}
	out, err := d.ctl(t, "org", "set", "acme", "--scale-to-zero=false", "--idle-window", "2h")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ORG", "STATE", "acme", "active", "never (scale to zero off)", "off", "2h0m"} {
		if !strings.Contains(out, want) {
			t.Errorf("org set output lacks %q:\n%s", want, out)
		}
	}
	out, err = d.ctl(t, "org", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Orgs []struct {
			ID                 string `json:"id"`
			ScaleToZeroAllowed bool   `json:"scaleToZeroAllowed"`
			IdleWindow         string `json:"idleWindow"`
		} `json:"orgs"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, out)
	}
	if len(list.Orgs) != 1 || list.Orgs[0].ID != "acme" || list.Orgs[0].ScaleToZeroAllowed || list.Orgs[0].IdleWindow != "7200s" {
		t.Fatalf("json list: %+v", list)
	}
	out, err = d.ctl(t, "org", "list", "--dormant")
	if err != nil || strings.Contains(out, "acme") {
		t.Fatalf("--dormant lists an active org: %v\n%s", err, out)
	}
	_, err = d.ctl(t, "org", "get", "nobody")
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), `org "nobody"`) ||
		strings.Count(strings.TrimSpace(err.Error()), "\n") != 0 {
		t.Fatalf("want exit 1 and a one-line error naming the org, got %v", err)
	}
	_, err = d.ctl(t, "activity", "bad org")
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
}

func TestCorruptDataDirStopsStart(t *testing.T) {
	dir := t.TempDir()
	d := start(t, options(t, dir))
	if _, err := d.ctl(t, "activity", "acme"); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	corruptEveryFile(t, dir)
	if _, err := newApp(options(t, dir)); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want an error naming %s, got %v", dir, err)
	}
}
