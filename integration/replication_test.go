package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/clocktest"
	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

const replTopic = "projects/p-repl/topics/orgs"

// noPeer is --peers for the first replica of a fleet in these tests:
// nothing listens there, as when a headless Service lists only the
// replica itself.
const noPeer = "127.0.0.1:1"

// startFleet runs n replicas replicating over one topic of Google's
// Pub/Sub emulator, each started with an empty data dir and the others'
// API ports as peers, one after the other (as a StatefulSet starts them).
func startFleet(t *testing.T, n int, with ...func(*app.Options)) []*daemon {
	t.Helper()
	return startFleetOn(t, pubsubtest.Start(t), n, with...)
}

// startFleetOn is startFleet on an emulator the test can break.
func startFleetOn(t *testing.T, em *pubsubtest.Emulator, n int, with ...func(*app.Options)) []*daemon {
	t.Helper()
	createReplTopic(t, em.Addr)
	var fleet []*daemon
	for i := range n {
		fleet = append(fleet, startReplica(t, fmt.Sprintf("scaler-%d", i), t.TempDir(), fleet, with...))
	}
	return fleet
}

// createReplTopic creates the replication topic on the emulator at addr,
// and returns a client of its project.
func createReplTopic(t *testing.T, addr string) *pubsub.Client {
	t.Helper()
	c := pubsubtest.Client(t, addr, "p-repl")
	if _, err := c.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: replTopic}); err != nil {
		t.Fatal(err)
	}
	return c
}

// startReplica starts one replica with peers' API ports as --peers, and
// waits until it is ready.
func startReplica(t *testing.T, id, dir string, peers []*daemon, with ...func(*app.Options)) *daemon {
	t.Helper()
	o := options(t, dir)
	for _, f := range with {
		f(&o)
	}
	o.Replication, o.ReplicationTopic, o.ReplicaID = app.ReplicationPubSub, replTopic, id
	for _, p := range peers {
		o.Peers = append(o.Peers, p.app.APIAddr())
	}
	if len(o.Peers) == 0 {
		o.Peers = []string{noPeer}
	}
	d := start(t, o)
	health := healthpb.NewHealthClient(d.dial(t, d.app.Addr()))
	poll(t, id+" ready", func() bool {
		h, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	return d
}

func digests(t *testing.T, fleet []*daemon) []string {
	t.Helper()
	var out []string
	for _, d := range fleet {
		r, err := d.orgs.Digest(context.Background(), &pb.DigestRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s/%d", r.GetDigest(), r.GetOrgs()))
	}
	return out
}

func agree(s []string) bool {
	for _, v := range s {
		if v != s[0] {
			return false
		}
	}
	return true
}

// roundRobin is KEDA's client as KEDA dials a headless Service: one
// connection spread over every replica with round_robin.
func roundRobin(t *testing.T, fleet []*daemon) kedapb.ExternalScalerClient {
	t.Helper()
	r := manual.NewBuilderWithScheme("fleet")
	var addrs []resolver.Address
	for _, d := range fleet {
		addrs = append(addrs, resolver.Address{Addr: d.app.Addr()})
	}
	r.InitialState(resolver.State{Addresses: addrs})
	conn, err := grpc.NewClient("fleet:///orgscaler", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return kedapb.NewExternalScalerClient(conn)
}

// Activity for 10k orgs and 100 admin changes and deletes sent to random
// replicas: every replica ends with the same state, and KEDA's polls,
// spread round robin, get one answer whichever replica gives it.
func TestReplicasAgree(t *testing.T) {
	fleet := startFleet(t, 3)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	// 10k orgs of activity, a stream to each replica, then single calls.
	const orgs = 10_000
	for i, d := range fleet {
		s, err := d.act.StreamActivity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for j := i; j < orgs; j += len(fleet) {
			if err := s.Send(&pb.StreamActivityRequest{Org: fmt.Sprintf("org-%05d", j)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		d := fleet[r.IntN(3)]
		if _, err := d.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("org-%05d", i*31%orgs)}); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	changed := map[string]bool{}
	var brief string // an org with a 1s window: dormant everywhere soon
	for i := range 100 {
		d := fleet[r.IntN(3)]
		org := fmt.Sprintf("org-%05d", r.IntN(orgs))
		changed[org] = true
		var err error
		switch i % 4 {
		case 0:
			_, err = d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: org, ScaleToZeroAllowed: &off})
		case 1:
			_, err = d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: org, IdleWindow: durationOf(time.Hour)})
		case 2:
			_, err = d.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: org, IdleWindow: durationOf(time.Second)})
			brief = org
		default:
			_, err = d.orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: org})
		}
		if err != nil && !isNotFound(err) {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var ds []string
	poll(t, "every replica's digest equal", func() bool { ds = digests(t, fleet); return agree(ds) })
	t.Logf("digests equal %s after the last change: %s", time.Since(start).Round(time.Millisecond), ds[0])

	// Every changed org (scale-to-zero off, windows of 1h and 1s, deleted)
	// and 60 others, asked of each replica in turn: once the 1s windows have
	// run out everywhere, each replica gives the same answer, and the
	// sample holds both answers (so a disagreement could show).
	poll(t, "the 1s-window orgs dormant on every replica", func() bool {
		for _, d := range fleet {
			o, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: brief})
			if isNotFound(err) {
				continue // deleted since
			}
			if err != nil || o.GetOrg().GetState() != pb.Org_STATE_DORMANT {
				return false
			}
		}
		return true
	})
	for i := range 60 {
		changed[fmt.Sprintf("org-%05d", i*150)] = true
	}
	answers := map[bool]int{}
	for org := range changed {
		var first *bool
		for _, d := range fleet {
			a, err := d.keda.IsActive(ctx, pynode(org))
			if err != nil {
				t.Fatalf("%s on %s: %v", org, d.app.Addr(), err)
			}
			if first == nil {
				v := a.GetResult()
				first = &v
			} else if a.GetResult() != *first {
				t.Fatalf("%s: replicas disagree (%v here, %v on the first)", org, a.GetResult(), *first)
			}
		}
		answers[*first]++
	}
	if answers[true] == 0 || answers[false] == 0 {
		t.Fatalf("the sample's answers %v: want both active and idle orgs", answers)
	}
	t.Logf("%d orgs asked of every replica: %d active, %d idle, every replica agreeing", len(changed), answers[true], answers[false])

	keda := roundRobin(t, fleet)
	for i := range 60 {
		ref := pynode(fmt.Sprintf("org-%05d", i*150))
		if _, err := keda.IsActive(ctx, ref); err != nil {
			t.Fatalf("KEDA's round robin client: %v", err)
		}
	}
}

func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// Activity sent to one replica wakes a dormant org's stream held by
// another; an admin change made on one is in force on all.
func TestWakeAcrossReplicas(t *testing.T) {
	fleet := startFleet(t, 3)
	a, c := fleet[0], fleet[2]
	ctx := context.Background()
	if _, err := a.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", IdleWindow: durationOf(time.Second)}); err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	for range 5 {
		poll(t, "acme dormant on every replica", func() bool {
			for _, d := range fleet {
				o, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"})
				if err != nil || o.GetOrg().GetState() != pb.Org_STATE_DORMANT {
					return false
				}
			}
			return true
		})
		sctx, cancel := context.WithCancel(ctx)
		stream, err := c.keda.StreamIsActive(sctx, pynode("acme"))
		if err != nil {
			t.Fatal(err)
		}
		pushed := make(chan time.Time, 1)
		go func() {
			if r, err := stream.Recv(); err == nil && r.GetResult() {
				pushed <- time.Now()
			}
		}()
		poll(t, "the stream is open on C", func() bool { _, err := c.ctl(t, "explain", "orgs/pynode-acme"); return err == nil })
		sent := time.Now()
		if _, err := a.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-pushed:
			lat = append(lat, at.Sub(sent))
		case <-time.After(10 * time.Second):
			t.Fatal("activity on replica A did not wake the stream held by replica C")
		}
		cancel()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("wake across replicas (activity on A, push from C): min %s, max %s", lat[0], lat[len(lat)-1])

	off := false
	if _, err := a.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	poll(t, "the admin change in force on every replica", func() bool {
		for _, d := range fleet {
			o, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"})
			if err != nil || o.GetOrg().GetScaleToZeroAllowed() {
				return false
			}
		}
		return true
	})
	t.Logf("admin change in force everywhere %s after the call returned", time.Since(done).Round(time.Millisecond))
}

// A replica with an empty data dir (a new pod, a lost volume) loads a
// peer's snapshot, applies its subscription on top, and only then is ready:
// with the same digest as the others.
func TestEmptyReplicaJoins(t *testing.T) {
	fleet := startFleet(t, 3)
	ctx := context.Background()
	off := false
	for i := range 200 {
		if _, err := fleet[i%3].act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("org-%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fleet[1].orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "org-007", ScaleToZeroAllowed: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet[2].orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: "org-008"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the three agree", func() bool { return agree(digests(t, fleet)) })
	began := time.Now()
	joined := startReplica(t, "scaler-3", t.TempDir(), fleet)
	ready := time.Since(began)
	all := append(fleet, joined)
	if ds := digests(t, all); !agree(ds) {
		t.Fatalf("ready with partial state: %v", ds)
	}
	// The admin change and the delete (its tombstone) came with it.
	o, err := joined.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "org-007"})
	if err != nil || o.GetOrg().GetScaleToZeroAllowed() {
		t.Fatalf("the admin change came with the snapshot: %v %v", o, err)
	}
	if _, err := joined.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "org-008"}); !isNotFound(err) {
		t.Fatalf("the delete came with the snapshot: %v", err)
	}
	// And it takes part: activity on it reaches the others.
	if _, err := joined.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "newcomer"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the four agree", func() bool { return agree(digests(t, all)) })
	t.Logf("an empty replica joined and was ready in %s", ready.Round(time.Millisecond))
}

// A replica restarted on its data dir resumes its subscription and catches
// up with what it missed while it was down.
func TestRestartedReplicaCatchesUp(t *testing.T) {
	fleet := startFleet(t, 3)
	ctx := context.Background()
	dir := fleet[2].app.DataDir()
	fleet[2].stop(t)
	for i := range 50 {
		if _, err := fleet[i%2].act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("missed-%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	back := startReplica(t, "scaler-2", dir, fleet[:2])
	poll(t, "the restarted replica caught up", func() bool { return agree(digests(t, []*daemon{fleet[0], fleet[1], back})) })
}

// A hint sent to one replica counts on every replica, once: a worker
// polled round robin gets the same replica count whichever answers.
func TestHintsReachEveryReplica(t *testing.T) {
	ms := monitoringtest.Start(t)
	sub := "projects/p-repl/subscriptions/transcribe"
	ms.Set(sub, 0, time.Now())
	fleet := startFleet(t, 3, func(o *app.Options) {
		o.PubSub, o.MonitoringEndpoint, o.MonitoringInsecure = app.PubSubMonitoring, ms.Addr, true
		o.DepthRefresh = 100 * time.Millisecond
	})
	ref := worker(sub, 2)
	for _, d := range fleet {
		poll(t, "the empty queue seen", func() bool {
			active, replicas, err := state(d, ref)
			return err == nil && !active && replicas == 0
		})
	}
	if _, err := fleet[0].act.Hint(context.Background(), &pb.HintRequest{Subscription: sub, Messages: 5}); err != nil {
		t.Fatal(err)
	}
	for i, d := range fleet {
		poll(t, fmt.Sprintf("replica %d counts the hint", i), func() bool {
			active, replicas, err := state(d, ref)
			return err == nil && active && replicas == 3
		})
	}
	keda := roundRobin(t, fleet)
	spec, err := keda.GetMetricSpec(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	for range 9 {
		m, err := keda.GetMetrics(context.Background(), &kedapb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: spec.GetMetricSpecs()[0].GetMetricName()})
		if err != nil || m.GetMetricValues()[0].GetMetricValue() != 3 {
			t.Fatalf("round robin: want 3 replicas from every replica (5 hinted messages, 2 a replica), got %v %v", m, err)
		}
	}
}

// Idle times counted on whichever replica took the activity reach every
// replica, and a replica that joins empty gets them in its snapshot: the
// same learned plan, and the same pre-warm, whichever replica answers.
func TestIdleTimesReplicate(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	fake := func(o *app.Options) { o.Now = clock.Now }
	fleet := startFleet(t, 3, fake)
	ctx := context.Background()
	md := map[string]string{"workload": "model", "org": "acme", "keepAlive": "learned", "coldStart": "3m"}
	for i := range 6 { // five idle times of 30 minutes, each seen by a different replica
		if _, err := fleet[i%3].act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
			t.Fatal(err)
		}
		// The next replica must know of this activity before it measures
		// the idle time to the next.
		poll(t, "the activity reached every replica", func() bool { return agree(digests(t, fleet)) })
		clock.Advance(30 * time.Minute)
	}
	clock.Advance(-20 * time.Minute) // 10 minutes after the last activity
	plans := func(fleet []*daemon) []string {
		var out []string
		for _, d := range fleet {
			e, err := d.orgs.Explain(ctx, &pb.ExplainRequest{Metadata: md})
			if err != nil {
				t.Fatal(err)
			}
			k := e.GetKeepAlive()
			out = append(out, fmt.Sprintf("%d idle times (fleet %d), %s, keep %s, next pre-warm %s", k.GetIdleTimes(), k.GetFleetIdleTimes(), e.GetRule(), k.GetKeepFor().AsDuration(), k.GetNextPrewarm().AsTime()))
		}
		return out
	}
	poll(t, "every replica plans from the five idle times", func() bool {
		p := plans(fleet)
		return agree(p) && strings.HasPrefix(p[0], "5 idle times (fleet 5), plan-down")
	})
	// Each replica flushes the minutes it took at a History call, then the
	// others merge them: the same day everywhere, in the end.
	days := func(fleet []*daemon) []string {
		var out []string
		for _, d := range fleet {
			stream, err := d.orgs.History(ctx, &pb.HistoryRequest{Day: timestamppb.New(clock.Now())})
			if err != nil {
				t.Fatal(err)
			}
			var rows []string
			for {
				r, err := stream.Recv()
				if err != nil {
					break
				}
				for _, day := range r.GetDays() {
					rows = append(rows, fmt.Sprintf("%s:%x", day.GetOrg(), day.GetMinutes()))
				}
			}
			out = append(out, strings.Join(rows, ","))
		}
		return out
	}
	poll(t, "every replica holds the six minutes of acme's activity", func() bool { d := days(fleet); return agree(d) && d[0] != "" })
	joined := startReplica(t, "scaler-3", t.TempDir(), fleet, fake)
	if p := plans(append(fleet, joined)); !agree(p) {
		t.Fatalf("the joined replica plans otherwise: %v", p)
	}
	if d := days(append(fleet, joined)); !agree(d) {
		t.Fatalf("the joined replica's history differs: %v", d)
	}
	t.Logf("every replica: %s", plans(fleet)[0])
}
