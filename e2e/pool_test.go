//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// A GPU pool on real ScaledObjects, through KEDA's operator: the pool
// reads minReplicaCount and maxReplicaCount from the cluster (pool-a keeps
// its 1 whatever the pool holds; pool-w's 5 messages ask for only its 2),
// pool-b's model is held at zero while the pool of 1 GPU is
// full, with a PoolCapped Event on its ScaledObject, and wakes with a
// PoolRecovered Event once the pool grows.
func TestPoolOnRealScaledObjects(t *testing.T) {
	ctx := context.Background()
	s := newScaler("pool", "--idle-window", "1h")
	startScaler(t, s)
	t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })
	s.ctl(t, "pool", "set", "e2e-gpus", "--gpus", "1", "--stabilization", "1s")
	_ = c.kubectl(nil, "create", "namespace", "ml")
	so := `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: NAME, namespace: ml}
spec:
  scaleTargetRef: {name: NAME}
  minReplicaCount: MIN
  maxReplicaCount: 2
  pollingInterval: 1
  cooldownPeriod: 2
  triggers:
    - type: external-push
      metadata: {scalerAddress: "ADDR", workload: model, org: ORG, pool: e2e-gpus, gpusPerReplica: "1"}
`
	for _, o := range []struct{ name, org, min string }{{"pool-a", "pool-org-a", "1"}, {"pool-b", "pool-org-b", "0"}} {
		if err := c.kubectl([]byte(strings.ReplaceAll(deployments, "NAME", o.name)), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		obj := strings.NewReplacer("NAME", o.name, "MIN", o.min, "ADDR", s.keda, "ORG", o.org).Replace(so)
		if err := c.kubectl([]byte(obj), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.kubectl(nil, "delete", "scaledobject", o.name, "-n", "ml") })
	}
	// A GPU worker with 5 messages waiting and maxReplicaCount 2: it asks
	// the pool for 2, not 5.
	ps := pubsubtest.Client(t, s.pubsub, "pool-e2e")
	pubsubtest.Create(t, ps, "projects/pool-e2e/subscriptions/pool-work")
	pub := ps.Publisher("projects/pool-e2e/topics/pool-work")
	for i := range 5 {
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(fmt.Sprint(i))}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub.Stop()
	worker := strings.NewReplacer("NAME", "pool-w", "MIN", "0", "ADDR", s.keda, "ORG", "pool-org-w",
		"pool: e2e-gpus", "pool: e2e-gpus, subscription: projects/pool-e2e/subscriptions/pool-work, workload: worker").Replace(so)
	worker = strings.Replace(worker, "workload: model, ", "", 1)
	if err := c.kubectl([]byte(strings.ReplaceAll(deployments, "NAME", "pool-w")), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if err := c.kubectl([]byte(worker), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.kubectl(nil, "delete", "scaledobject", "pool-w", "-n", "ml") })
	seats := func() map[string]*pb.PoolMember {
		var p pb.Pool
		if err := protojson.Unmarshal([]byte(s.ctl(t, "pool", "get", "e2e-gpus", "-o", "json")), &p); err != nil {
			t.Fatal(err)
		}
		out := map[string]*pb.PoolMember{}
		for _, m := range p.GetMembers() {
			out[m.GetScaledObject()] = m
		}
		return out
	}
	waitFor(t, 60*time.Second, "pool-a holds the GPU (its minimum), pool-b queued with a PoolCapped Event", func() (string, bool) {
		m := seats()
		a, b := m["ml/pool-a"], m["ml/pool-b"]
		n := ourEvents(t, "pool-b", "PoolCapped")
		return fmt.Sprint(m, " PoolCapped ", n), a.GetShare() == 1 && a.GetMin() == 1 && b.GetShare() == 0 && b.GetDemand() == 1 &&
			b.GetQueuePosition() > 0 && n == 1 && m["ml/pool-w"].GetDemand() == 2
	})
	waitReplicas(t, "pool-b", is(0), "pool-b held at zero while the pool is full", 30*time.Second)
	waitReplicas(t, "pool-a", is(1), "pool-a at its minimum", 30*time.Second)

	s.ctl(t, "pool", "set", "e2e-gpus", "--gpus", "2")
	waitReplicas(t, "pool-b", is(1), "pool-b woken once the pool grows", 30*time.Second)
	waitFor(t, 30*time.Second, "a PoolRecovered Event on pool-b", func() (string, bool) {
		n := ourEvents(t, "pool-b", "PoolRecovered")
		return fmt.Sprintf("PoolRecovered %d", n), n == 1
	})
}
