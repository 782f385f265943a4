package api

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orgscaler/orgscaler/activity"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/pubsubdepth"
)

// Any activity, hint or admin message, decoded from arbitrary bytes, is
// either served or refused with a client-side gRPC code that says what was
// wrong; never a panic, an Internal error or a silent acceptance of an
// invalid org.
func FuzzAPIMessages(f *testing.F) {
	store, err := activity.Open(activity.Options{Dir: f.TempDir(), IdleWindow: time.Hour, FlushInterval: time.Second, MaxOrgs: 1000})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	tracker := pubsubdepth.NewTracker(pubsubdepth.TrackerOptions{Source: nopSource{}, Refresh: time.Hour, MaxAge: time.Hour})
	s := New(Options{Store: store, Backlogs: tracker})
	add := func(op byte, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(op, b)
	}
	on := false
	add(0, &pb.RecordActivityRequest{Org: "acme"})
	add(0, &pb.RecordActivityRequest{Org: "ac me"})
	add(1, &pb.HintRequest{Subscription: "projects/p/subscriptions/jobs", Org: "acme", Messages: 3})
	add(1, &pb.HintRequest{Subscription: "projects/p/subscriptions/jobs", Messages: -1})
	add(2, &pb.UpdateOrgRequest{Org: "acme", ScaleToZeroAllowed: &on, IdleWindow: durationpb.New(time.Hour)})
	add(2, &pb.UpdateOrgRequest{Org: "acme", IdleWindow: &durationpb.Duration{Seconds: -1, Nanos: 5}})
	add(2, &pb.UpdateOrgRequest{Org: "acme", IdleWindow: &durationpb.Duration{Seconds: 1 << 62}})
	add(3, &pb.GetOrgRequest{Org: "acme"})
	add(4, &pb.ListOrgsRequest{PageSize: -5, PageToken: "zz"})
	add(5, &pb.DeleteOrgRequest{Org: "acme"})
	add(5, &pb.DeleteOrgRequest{Org: "a/b"})
	allowed := map[codes.Code]bool{codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true,
		codes.FailedPrecondition: true, codes.ResourceExhausted: true, codes.Unimplemented: true}
	f.Fuzz(func(t *testing.T, op byte, b []byte) {
		ctx := context.Background()
		var org string
		var err error
		deleted := false
		switch op % 6 {
		case 0:
			var req pb.RecordActivityRequest
			if proto.Unmarshal(b, &req) != nil {
				return
			}
			org = req.GetOrg()
			_, err = s.RecordActivity(ctx, &req)
		case 1:
			var req pb.HintRequest
			if proto.Unmarshal(b, &req) != nil {
				return
			}
			org = req.GetOrg()
			_, err = s.Hint(ctx, &req)
		case 2:
			var req pb.UpdateOrgRequest
			if proto.Unmarshal(b, &req) != nil {
				return
			}
			org = req.GetOrg()
			_, err = s.UpdateOrg(ctx, &req)
		case 3:
			var req pb.GetOrgRequest
			if proto.Unmarshal(b, &req) != nil {
				return
			}
			_, err = s.GetOrg(ctx, &req)
		case 4:
			var req pb.ListOrgsRequest
			if proto.Unmarshal(b, &req) != nil {
				return
			}
			_, err = s.ListOrgs(ctx, &req)
		case 5:
			var req pb.DeleteOrgRequest
			if proto.Unmarshal(b, &req) != nil {
				return
			}
			_, err = s.DeleteOrg(ctx, &req)
			if err == nil {
				if _, ok := store.Get(req.GetOrg()); ok {
					t.Fatalf("deleted org %q is still held", req.GetOrg())
				}
			}
			deleted = true
		}
		if c := status.Code(err); !allowed[c] {
			t.Fatalf("op %d: %v", op%6, err)
		}
		if err == nil && org != "" && !deleted {
			if _, ok := store.Get(org); !ok {
				t.Fatalf("op %d accepted org %q but the store does not hold it", op%6, org)
			}
		}
		if err != nil && status.Convert(err).Message() == "" {
			t.Fatalf("op %d: a refusal without a message", op%6)
		}
	})
}

// nopSource is a backlog source that knows nothing: hints still count.
type nopSource struct{}

func (nopSource) Fetch(context.Context, []string) (map[string]pubsubdepth.Point, error) {
	return map[string]pubsubdepth.Point{}, nil
}
