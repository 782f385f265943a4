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

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
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
// 2:1:1, 4/2/2; the sum never exceeds the pool; scalerctl pool get,
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
	shares := func() string {
		var got []string
		sum := 0.0
		for _, org := range []string{"a", "b", "c"} {
			active, n, err := state(d, refs[org])
			if err != nil {
				return err.Error()
			}
			if active != (n > 0) {
				return fmt.Sprintf("%s active %v with %v replicas", org, active, n)
			}
			got = append(got, fmt.Sprint(n))
			sum += n
		}
		if sum > 8 {
			t.Fatalf("%v: %v replicas of 1 GPU granted from a pool of 8", got, sum)
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
