package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/monitoringtest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// pooledWorker is an org's GPU worker in pool p: 1 GPU per replica, one
// replica per message.
func pooledWorker(org, sub, p string) *kedapb.ScaledObjectRef {
	return &kedapb.ScaledObjectRef{Name: "worker-" + org, Namespace: "gpu", ScalerMetadata: map[string]string{
		"scalerAddress": "orgscaler.keda:9090", "workload": "worker", "org": org, "subscription": sub, "pool": p,
		"gpusPerReplica": "1",
	}}
}

// The figures through KEDA's own client: three orgs' workers, each
// with 8 messages of backlog, in a pool of 8 GPUs get 3/3/2; with weights
// 2:1:1, 4/2/2; no turn grants more than the pool; scalerctl pool get,
// explain and /metrics show it; a trigger naming a pool that does not
// exist gets FailedPrecondition naming it.
func TestPoolSharesOnEmbeddedPubSub(t *testing.T) {
	o := options(t, t.TempDir())
	o.PubSub, o.PubSubListen, o.DepthRefresh = app.PubSubEmbedded, "127.0.0.1:0", 100*time.Millisecond
	d := start(t, o)
	ctx := context.Background()

	_, err := d.keda.IsActive(ctx, pooledWorker("a", "projects/demo/subscriptions/work-a", "gpus"))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `"gpus"`) {
		t.Fatalf("a pool that does not exist: %v; want FailedPrecondition naming it", err)
	}
	if _, err := d.ctl(t, "pool", "set", "gpus", "--gpus", "8", "--stabilization", "2s"); err != nil {
		t.Fatal(err)
	}
	ps := pubsubtest.Client(t, d.app.PubSubAddr(), "demo")
	refs := map[string]*kedapb.ScaledObjectRef{}
	for _, org := range []string{"a", "b", "c"} {
		sub := "projects/demo/subscriptions/work-" + org
		pubsubtest.Create(t, ps, sub)
		pub := ps.Publisher("projects/demo/topics/work-" + org)
		for i := range 8 {
			if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(fmt.Sprint(i))}).Get(ctx); err != nil {
				t.Fatal(err)
			}
		}
		pub.Stop()
		refs[org] = pooledWorker(org, sub, "gpus")
	}
	// What KEDA is told, each answer at its own instant; and, at one turn,
	// the pool's shares, which never add up to more than it holds.
	shares := func() string {
		var p pb.Pool
		out, err := d.ctl(t, "pool", "get", "gpus", "-o", "json")
		if err != nil || protojson.Unmarshal([]byte(out), &p) != nil {
			return fmt.Sprint(err)
		}
		sum := int64(0)
		for _, m := range p.GetMembers() {
			sum += m.GetShare() * m.GetGpusPerReplica()
		}
		if sum > p.GetGpus() || p.GetGrantedGpus() > p.GetGpus() {
			t.Fatalf("one turn granted %d GPUs (%d by its figures) of a pool of %d:\n%s", sum, p.GetGrantedGpus(), p.GetGpus(), out)
		}
		var got []string
		for _, org := range []string{"a", "b", "c"} {
			active, n, err := state(d, refs[org])
			if err != nil {
				return err.Error()
			}
			if active != (n > 0) {
				return fmt.Sprintf("%s active %v with %v replicas", org, active, n)
			}
			got = append(got, fmt.Sprint(n))
		}
		return strings.Join(got, "/")
	}
	var got string
	pollFor(t, 20*time.Second, "3/3/2", func() bool { got = shares(); return got == "3/3/2" })

	if _, err := d.ctl(t, "org", "set", "a", "--pool-weight", "2"); err != nil {
		t.Fatal(err)
	}
	// a's rise waits for b's third replica to be given up (2s).
	pollFor(t, 20*time.Second, "4/2/2 with weights 2:1:1", func() bool { got = shares(); return got == "4/2/2" })

	out, err := d.ctl(t, "pool", "get", "gpus")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gpus  8     24        8", "gpu/worker-a", "2       1             8       4"} {
		if !strings.Contains(out, want) {
			t.Fatalf("scalerctl pool get should show %q:\n%s", want, out)
		}
	}
	out, err = d.ctl(t, "explain", "gpu/worker-b")
	if err != nil || !strings.Contains(out, "pool-capped: pool gpus grants 2 of the 8 replicas it wants") ||
		!strings.Contains(out, "gpus: share 2 of the 8 replica(s) it wants") {
		t.Fatalf("explain of a capped member: %v\n%s", err, out)
	}
	if v := metricValue(t, d, `orgscaler_pool_gpus{kind="granted",pool="gpus"}`); v != 8 {
		t.Fatalf("orgscaler_pool_gpus granted = %v; want 8", v)
	}
	if v := metricValue(t, d, `orgscaler_pool_gpus{kind="demanded",pool="gpus"}`); v != 24 {
		t.Fatalf("orgscaler_pool_gpus demanded = %v; want 24", v)
	}
}

// A pool's wake rate: four orgs' models woken at once in a pool paced at
// 2 per 2s wake two first; the others are queued (explain says where),
// and a queued one's StreamIsActive is pushed true when its turn comes.
func TestPoolPacesWakes(t *testing.T) {
	o := options(t, t.TempDir())
	o.UnseenOrgs = app.UnseenDormant // KEDA's first questions find the orgs dormant
	d := start(t, o)
	ctx := context.Background()
	if _, err := d.ctl(t, "pool", "set", "models", "--gpus", "8", "--wake-rate", "2/2s"); err != nil {
		t.Fatal(err)
	}
	orgs := []string{"m1", "m2", "m3", "m4"}
	model := func(org string) *kedapb.ScaledObjectRef {
		ref := pynode(org)
		ref.Name, ref.ScalerMetadata["pool"], ref.ScalerMetadata["gpusPerReplica"] = "model-"+org, "models", "1"
		return ref
	}
	for _, org := range orgs {
		poll(t, org+" seated, inactive", func() bool { a, _, err := state(d, model(org)); return err == nil && !a })
	}
	if _, err := d.ctl(t, append([]string{"activity"}, orgs...)...); err != nil {
		t.Fatal(err)
	}
	active := func() (n int, queued []string) {
		for _, org := range orgs {
			a, _, err := state(d, model(org))
			if err != nil {
				t.Fatal(err)
			}
			if a {
				n++
			} else {
				queued = append(queued, org)
			}
		}
		return n, queued
	}
	var queued []string
	poll(t, "two woken, two queued", func() bool {
		var n int
		n, queued = active()
		return n == 2
	})
	stream, err := d.keda.StreamIsActive(ctx, model(queued[1]))
	if err != nil {
		t.Fatal(err)
	}
	pushed := trues(stream, time.Now)
	out, err := d.ctl(t, "explain", "orgs/model-"+queued[1])
	if err != nil || !strings.Contains(out, "queued: pool models full (#2 of 2)") {
		t.Fatalf("explain of the second queued model: %v\n%s", err, out)
	}
	if out, err := d.ctl(t, "pool", "get", "models"); err != nil || !strings.Contains(out, "2 (next wake in ") {
		t.Fatalf("pool get while two wait: %v\n%s; want the queue and when it moves next", err, out)
	}
	select {
	case <-pushed:
	case <-time.After(10 * time.Second):
		t.Fatal("the queued model's stream was not pushed true when its turn came")
	}
	poll(t, "all four woken", func() bool { n, _ := active(); return n == 4 })
}

// Two replicas answer one allocation: a pool set on one reaches the other,
// so do org weights, and KEDA's round robin, which asks each replica about
// every member, gets the same share from both. Of three orgs' models in a
// pool of 2 GPUs, the org of weight 3 and then the first by name get them.
func TestPoolFleetAgrees(t *testing.T) {
	fleet := startFleet(t, 2)
	if _, err := fleet[0].ctl(t, "pool", "set", "gpus", "--gpus", "2", "--stabilization", "1s"); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet[1].ctl(t, "org", "set", "o3", "--pool-weight", "3"); err != nil {
		t.Fatal(err)
	}
	model := func(org string) *kedapb.ScaledObjectRef {
		ref := pynode(org)
		ref.Name, ref.ScalerMetadata["workload"], ref.ScalerMetadata["pool"] = "model-"+org, "model", "gpus"
		return ref
	}
	want := map[string]float64{"o1": 1, "o2": 0, "o3": 1}
	var got []string
	pollFor(t, 20*time.Second, "both replicas answering o1 and o3 active, o2 queued", func() bool {
		got = got[:0]
		same := true
		for i, d := range fleet {
			for _, org := range []string{"o1", "o2", "o3"} {
				active, n, err := state(d, model(org))
				got = append(got, fmt.Sprintf("replica %d %s: %v %v %v", i, org, active, n, err))
				same = same && err == nil && active == (want[org] > 0) && n == want[org]
			}
		}
		return same
	})
	if d := digests(t, fleet); !agree(d) {
		t.Fatalf("the replicas' digests (orgs and pools) differ: %v", d)
	}
	out, err := fleet[1].ctl(t, "pool", "get", "gpus")
	if err != nil || !strings.Contains(out, "#1 of 1") {
		t.Fatalf("the other replica's pool get should show o2 queued: %v\n%s", err, out)
	}
}

// A pool whose member goes blind, through the served MetricService: two
// orgs' workers with 4 messages each share a pool of 4 GPUs 2/2; when a's
// backlog can no longer be seen (its newest point is older than the max
// age), a gets Unavailable from GetMetrics (KEDA's fallback, as for any
// blind trigger) and IsActive keeps its last answer, and the pool keeps
// a's demand: b is not given a's GPUs because a could not be seen.
func TestPoolMemberBlindKeepsItsDemand(t *testing.T) {
	ms := monitoringtest.Start(t)
	checked := subscriptionCheck(t)
	subA, subB := "projects/proj-pool-a/subscriptions/work-a", "projects/proj-pool-b/subscriptions/work-b"
	pubsubtest.Create(t, pubsubtest.Client(t, checked, "proj-pool-a"), subA)
	pubsubtest.Create(t, pubsubtest.Client(t, checked, "proj-pool-b"), subB)
	// Monitoring keeps publishing fresh points of 4 messages for both.
	set := func() { ms.Set(subA, 4, time.Now()); ms.Set(subB, 4, time.Now()) }
	set()
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				set()
			}
		}
	}()
	o := options(t, t.TempDir())
	o.PubSub, o.MonitoringEndpoint, o.MonitoringInsecure = app.PubSubMonitoring, ms.Addr, true
	o.DepthRefresh, o.DepthMaxAge = 100*time.Millisecond, 2*time.Second
	d := start(t, o)
	if _, err := d.ctl(t, "pool", "set", "gpus", "--gpus", "4", "--stabilization", "1s"); err != nil {
		t.Fatal(err)
	}
	a, b := pooledWorker("a", subA, "gpus"), pooledWorker("b", subB, "gpus")
	pollFor(t, 20*time.Second, "2/2", func() bool {
		_, na, errA := state(d, a)
		_, nb, errB := state(d, b)
		return errA == nil && errB == nil && na == 2 && nb == 2
	})
	ms.SetFailFor("proj-pool-a", status.Error(codes.Unavailable, "monitoring is down for proj-pool-a"))
	ctx := context.Background()
	pollFor(t, 20*time.Second, "a blind: GetMetrics Unavailable", func() bool {
		spec, err := d.keda.GetMetricSpec(ctx, a)
		if err != nil {
			return false
		}
		_, err = d.keda.GetMetrics(ctx, &kedapb.GetMetricsRequest{ScaledObjectRef: a, MetricName: spec.GetMetricSpecs()[0].GetMetricName()})
		return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), subA)
	})
	if r, err := d.keda.IsActive(ctx, a); err != nil || !r.GetResult() {
		t.Fatalf("IsActive of a blind member: %v %v; want its last answer, true", r, err)
	}
	// A turn made after a went blind: the pool still counts a's 4, b keeps 2.
	blindAt := time.Now()
	var p pb.Pool
	pollFor(t, 10*time.Second, "a turn after a went blind", func() bool {
		out, err := d.ctl(t, "pool", "get", "gpus", "-o", "json")
		return err == nil && protojson.Unmarshal([]byte(out), &p) == nil && p.GetTurnedAt().AsTime().After(blindAt)
	})
	if p.GetDemandedGpus() != 8 {
		t.Fatalf("the pool's demanded GPUs with a blind: %d; want 8 (a's last demand kept)", p.GetDemandedGpus())
	}
	if _, nb, err := state(d, b); err != nil || nb != 2 {
		t.Fatalf("b while a is blind: %v %v; want 2", nb, err)
	}
}

// With replication's Pub/Sub paused, a pool set on one replica is in force
// there and answered Unavailable within --replication-wait; the other
// replica, not knowing the pool yet, tells KEDA FailedPrecondition (its
// fallback applies there) until Pub/Sub is back and the pool arrives.
func TestPoolSetWhilePubSubPaused(t *testing.T) {
	em := pubsubtest.Start(t)
	fleet := startFleetOn(t, em, 2, func(o *app.Options) { o.ReplicationWait = time.Second })
	a, b := fleet[0], fleet[1]
	ref := pynode("acme")
	ref.ScalerMetadata["pool"], ref.ScalerMetadata["gpusPerReplica"] = "gpus", "1"
	em.Pause(t)
	_, err := a.ctl(t, "pool", "set", "gpus", "--gpus", "4")
	if err == nil || !strings.Contains(err.Error(), "accepted here but not yet replicated") || !strings.Contains(err.Error(), "Unavailable") {
		em.Resume(t)
		t.Fatalf("a pool set with Pub/Sub paused: %v; want Unavailable saying it is accepted here", err)
	}
	if _, _, err := state(b, ref); status.Code(err) != codes.FailedPrecondition {
		em.Resume(t)
		t.Fatalf("the other replica before the pool reaches it: %v; want FailedPrecondition", err)
	}
	em.Resume(t)
	if active, n, err := state(a, ref); err != nil || !active || n != 1 {
		t.Fatalf("the replica that took the set: %v %v %v; want active, 1", active, n, err)
	}
	poll(t, "the pool on the other replica once Pub/Sub is back", func() bool {
		active, n, err := state(b, ref)
		return err == nil && active && n == 1
	})
}
