package integration

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// A flood of activity on the API port, unary and streamed, from many
// connections, does not stop KEDA's port from answering: the two ports
// are separate servers.
func TestKEDAPortAnswersDuringAPIFlood(t *testing.T) {
	o := options(t, t.TempDir())
	o.Logger = slog.New(slog.DiscardHandler) // a log line for each of ~100k new orgs
	d := start(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i := range 4 {
		act := pb.NewActivityServiceClient(d.dial(t, d.app.APIAddr()))
		wg.Go(func() {
			if i%2 == 0 {
				for n := 0; ctx.Err() == nil; n++ {
					if _, err := act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("flood-%d-%d", i, n%5000)}); err == nil {
						sent.Add(1)
					}
				}
				return
			}
			s, err := act.StreamActivity(ctx)
			if err != nil {
				return
			}
			for n := 0; ctx.Err() == nil; n++ {
				if s.Send(&pb.StreamActivityRequest{Org: fmt.Sprintf("flood-%d-%d", i, n%5000)}) != nil {
					return
				}
				sent.Add(1)
			}
		})
	}
	poll(t, "the flood under way", func() bool { return sent.Load() > 10000 })
	for n := range 200 {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := d.keda.IsActive(cctx, pynode(fmt.Sprintf("org-%d", n%20)))
		ccancel()
		if err != nil {
			t.Fatalf("IsActive %d during the flood: %v", n, err)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d activity events sent while KEDA's port answered 200 calls", sent.Load())
}

// Activity and KEDA's triggers for ever-new org ids stop at --max-orgs with
// ResourceExhausted naming the limit; known orgs go on, and an admin may
// still create one.
func TestMaxOrgs(t *testing.T) {
	o := options(t, t.TempDir())
	o.MaxOrgs = 3
	d := start(t, o)
	ctx := context.Background()
	for _, org := range []string{"a", "b", "c"} {
		if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: org}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "d"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limit of 3 orgs (--max-orgs)") {
		t.Fatalf("a 4th org: want ResourceExhausted naming the limit, got %v", err)
	}
	if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "a"}); err != nil {
		t.Fatalf("a known org past the limit: %v", err)
	}
	s, err := d.act.StreamActivity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"b", "e"} {
		_ = s.Send(&pb.StreamActivityRequest{Org: org})
	}
	_, err = s.CloseAndRecv()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "event 2") {
		t.Fatalf("stream: want ResourceExhausted at event 2, got %v", err)
	}
	if _, err := d.keda.IsActive(ctx, pynode("keda-named")); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limit of 3 orgs") {
		t.Fatalf("a new org named by a trigger past the limit: want ResourceExhausted, got %v", err)
	}
	if active, _ := answer(t, d, pynode("a")); !active {
		t.Fatal("a known org's trigger must go on being answered past the limit")
	}
	on := true
	if _, err := d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "admin-named", ScaleToZeroAllowed: &on}); err != nil {
		t.Fatalf("an admin creates an org whatever the limit: %v", err)
	}
	if !strings.Contains(scrape(t, d), "orgscaler_org_limit_refusals_total 3") {
		t.Error("/metrics should count the 3 refusals")
	}
	long := &kedapb.ScaledObjectRef{Namespace: strings.Repeat("n", 300), Name: "x", ScalerMetadata: pynode("a").ScalerMetadata}
	if _, err := d.keda.IsActive(ctx, long); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a namespace longer than Kubernetes allows: want InvalidArgument, got %v", err)
	}
}
