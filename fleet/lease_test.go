package fleet

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes/fake"
)

// Two replicas stand for one Lease: one leads at a time (their terms never
// overlap), the metric says which, and when the leader stops it releases
// the Lease, so the other takes over within a retry period rather than
// the Lease's 15 s, and only after the first term has returned.
func TestOneLeaderAndHandOver(t *testing.T) {
	client := fake.NewClientset()
	var leaders atomic.Int32
	var overlap atomic.Bool
	started := make(chan string, 4)
	ended := make(chan string, 4)
	run := func(ctx context.Context, id string, reg prometheus.Registerer) chan error {
		done := make(chan error, 1)
		go func() {
			done <- elect(ctx, Options{Client: client, Namespace: "keda", Name: "orgscaler-leader", Identity: id, Registerer: reg},
				func(lctx context.Context) {
					if leaders.Add(1) > 1 {
						overlap.Store(true)
					}
					started <- id
					<-lctx.Done()
					leaders.Add(-1)
					ended <- id
				})
		}()
		return done
	}
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	ctxA, stopA := context.WithCancel(context.Background())
	defer stopA()
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA := run(ctxA, "scaler-0", regA)
	first := waitFor(t, started, "a first leader")
	if first != "scaler-0" {
		t.Fatalf("the only candidate %s did not lead; %s did", "scaler-0", first)
	}
	doneB := run(ctxB, "scaler-1", regB)
	select {
	case id := <-started:
		t.Fatalf("%s led while scaler-0 held the Lease", id)
	case <-time.After(3 * retryPeriod):
	}
	if v := gauge(t, regA); v != 1 {
		t.Fatalf("orgscaler_leader on the leader is %v", v)
	}
	if v := gauge(t, regB); v != 0 {
		t.Fatalf("orgscaler_leader on the follower is %v", v)
	}
	handover := time.Now()
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	if id := waitFor(t, ended, "the first term's end"); id != "scaler-0" {
		t.Fatalf("%s's term ended; want scaler-0's", id)
	}
	if id := waitFor(t, started, "the other replica leading"); id != "scaler-1" {
		t.Fatalf("%s leads after scaler-0 stopped", id)
	}
	if took := time.Since(handover); took > 2*retryPeriod+time.Second {
		t.Fatalf("the hand-over took %s; want within a retry period (the Lease was released)", took)
	}
	if overlap.Load() {
		t.Fatal("two terms overlapped")
	}
	stopB()
	if err := <-doneB; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, c chan string, what string) string {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(leaseDuration + 5*time.Second):
		t.Fatalf("%s: not within %s", what, leaseDuration+5*time.Second)
		return ""
	}
}

func gauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(reg, "orgscaler_leader")
	if err != nil || n != 1 {
		t.Fatalf("orgscaler_leader: %d series, %v", n, err)
	}
	mfs, _ := reg.Gather()
	return mfs[0].GetMetric()[0].GetGauge().GetValue()
}
