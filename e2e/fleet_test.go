//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Two replicas over the Pub/Sub emulator, on the real kube-apiserver: one
// holds the Lease, each wake and dormancy shows as one Event on the
// ScaledObject (not one per replica), both replicas give the same GPU-hours
// report, only the leader patches a Knative Service's Revision, and when
// the leader stops the other takes over and counts on.
func TestFleetCountsOnce(t *testing.T) {
	ctx := context.Background()
	applyCRDs(t, "knative")
	emulator := pubsubtest.StartEmulator(t)
	topic := "projects/fleet-e2e/topics/changes"
	client := pubsubtest.Client(t, emulator, "fleet-e2e")
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	replica := func(id, peer string) []string {
		return []string{"--pubsub=none", "--replication=pubsub", "--replication-topic", topic, "--replica-id", id,
			"--peers", peer, "--leader-elect-lease", "fleet-e2e", "--leader-elect-namespace", "default",
			"--idle-window", "4s", "--flush-interval", "200ms", "--knative"}
	}
	a, b := newScaler("fleet-a"), newScaler("fleet-b")
	a.extra, b.extra = replica("fleet-a", b.api), replica("fleet-b", a.api)
	startScaler(t, a)
	t.Cleanup(func() { a.p.stop(syscall.SIGTERM) })
	startScaler(t, b)
	t.Cleanup(func() { b.p.stop(syscall.SIGTERM) })

	holder := func() string {
		l, err := kube.CoordinationV1().Leases("default").Get(ctx, "fleet-e2e", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	first := waitFor(t, 60*time.Second, "a replica holds the Lease", func() (string, bool) { h := holder(); return h, h != "" })
	t.Logf("leader: %s", first)
	alertsQueryExportedMetrics(t, scrapeMetrics(t, a.metrics)+scrapeMetrics(t, b.metrics))

	_ = c.kubectl(nil, "create", "namespace", "ml")
	if err := c.kubectl([]byte(strings.ReplaceAll(deployments, "NAME", "pynode-fleet")), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	so := `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: pynode-fleet, namespace: ml}
spec:
  scaleTargetRef: {name: pynode-fleet}
  minReplicaCount: 0
  maxReplicaCount: 1
  pollingInterval: 1
  cooldownPeriod: 2
  triggers:
    - type: external-push
      metadata: {scalerAddress: "ADDR", workload: pynode, org: fleet, gpusPerReplica: "1"}
`
	if err := c.kubectl([]byte(strings.ReplaceAll(so, "ADDR", a.keda)), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.kubectl(nil, "delete", "scaledobject", "pynode-fleet", "-n", "ml") })
	_ = c.kubectl(nil, "create", "namespace", knNS)
	for _, obj := range []string{ksvc("pynode-fleet", "{orgscaler.io/org: fleet}"), krev("pynode-fleet-00001", "pynode-fleet", "")} {
		if err := c.kubectl([]byte(obj), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	}
	ready(t, dynamicClient(t), "pynode-fleet", "pynode-fleet-00001")
	t.Cleanup(func() { _ = c.kubectl(nil, "delete", "services.serving.knative.dev", "pynode-fleet", "-n", knNS) })

	// Dormant, woken on the replica that does not lead, dormant again.
	events := func(reason string) int { return ourEvents(t, "pynode-fleet", reason) }
	waitFor(t, 30*time.Second, "the org goes dormant", func() (string, bool) {
		d := events("OrgDormant")
		return fmt.Sprintf("OrgDormant %d", d), d == 1
	})
	follower := b
	if first == "fleet-b" {
		follower = a
	}
	follower.ctl(t, "activity", "fleet")
	waitFor(t, 30*time.Second, "one OrgWoke Event, then OrgDormant", func() (string, bool) {
		w, d := events("OrgWoke"), events("OrgDormant")
		return fmt.Sprintf("OrgWoke %d, OrgDormant %d", w, d), w >= 1 && d >= 2
	})
	if w, d := events("OrgWoke"), events("OrgDormant"); w != 1 || d != 2 {
		t.Fatalf("each transition is recorded once for the fleet: OrgWoke %d (want 1), OrgDormant %d (want 2: before and after the wake)", w, d)
	}

	report := func(s *ourScaler) *pb.ReportResponse {
		conn, err := grpc.NewClient(s.api, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r, err := pb.NewAdminServiceClient(conn).Report(ctx, &pb.ReportRequest{})
		if err != nil {
			return nil
		}
		return r
	}
	// Other tests' ScaledObjects may be in the cluster too: the leader
	// counts them all, and every replica must report them all the same.
	ours := func(r *pb.ReportResponse) *pb.WorkloadUsage {
		for _, w := range r.GetWorkloads() {
			if w.GetScaledObject() == "ml/pynode-fleet" {
				return w
			}
		}
		return nil
	}
	same := func(what string) *pb.WorkloadUsage {
		var got *pb.WorkloadUsage
		waitFor(t, 30*time.Second, what, func() (string, bool) {
			ra, rb := report(a), report(b)
			if ra == nil || rb == nil || ours(ra) == nil {
				return fmt.Sprintf("a: %v\nb: %v", ra, rb), false
			}
			got = ours(ra)
			return fmt.Sprintf("a: %v\nb: %v", ra.GetWorkloads(), rb.GetWorkloads()), proto.Equal(&pb.ReportResponse{Workloads: ra.GetWorkloads()}, &pb.ReportResponse{Workloads: rb.GetWorkloads()})
		})
		return got
	}
	before := same("both replicas report the same GPU-hours")
	if before.GetWakes()["activity"] != 1 {
		t.Fatalf("the wake is counted once for the fleet: %v", before)
	}
	patched := `orgscaler_knative_reconciles_total{result="patched"}`
	if n := metric(t, follower, patched); n != 0 {
		t.Errorf("the replica that does not lead patched a Knative Revision %v times; want only the leader to", n)
	}
	leaderScaler := a
	if first == "fleet-b" {
		leaderScaler = b
	}
	if n := metric(t, leaderScaler, patched); n < 2 {
		t.Errorf("the leader patched the Knative Revision %v times across a wake and a dormancy; want at least 2", n)
	}

	// The leader stops: the other takes the Lease and counts on.
	leader, other := a, b
	if first == "fleet-b" {
		leader, other = b, a
	}
	stopped := time.Now()
	leader.p.stop(syscall.SIGTERM)
	waitFor(t, 30*time.Second, "the other replica takes the Lease", func() (string, bool) { h := holder(); return h, h != "" && h != first })
	t.Logf("the other replica led %s after SIGTERM to the leader", time.Since(stopped).Round(10*time.Millisecond))
	// The old leader's last hours may still be on their way: the new one
	// must count well past what they can add (a tally interval and a flush).
	base := ours(report(other)).GetTracked().AsDuration()
	waitFor(t, 30*time.Second, "the new leader counts on from the replicated hours", func() (string, bool) {
		w := ours(report(other))
		if w == nil {
			return "no row for ml/pynode-fleet", false
		}
		return fmt.Sprint(w), w.GetTracked().AsDuration() > base+12*time.Second && w.GetWakes()["activity"] == 1
	})

	// A replica that starts empty gets the ledger's history in its
	// snapshot, and then the leader's hours as they come.
	joined := newScaler("fleet-c")
	joined.extra = replica("fleet-c", other.api)
	startScaler(t, joined)
	t.Cleanup(func() { joined.p.stop(syscall.SIGTERM) })
	a, b = other, joined
	same("a replica that joined empty reports what the leader does")
}

// waitFor polls cond until it holds or timeout passes, and returns its
// last observation.
// ourEvents counts the scaler's Events of reason on the ScaledObject
// name in ml, each of a series counted.
func ourEvents(t *testing.T, name, reason string) int {
	t.Helper()
	list, err := kube.EventsV1().Events("ml").List(context.Background(), metav1.ListOptions{FieldSelector: "regarding.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Reason != reason || e.ReportingController != "orgscaler" {
			continue
		}
		n++
		if e.Series != nil {
			n += int(e.Series.Count) - 1
		}
	}
	return n
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (string, bool)) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, ok := cond()
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alertsQueryExportedMetrics checks that every metric of the shipped
// alerts that a fleet exports is in metrics, the /metrics of a fleet's
// replicas: the replication and leader alerts can only be seen here.
// (up is Prometheus's own; orgscaler_depth_unknown has series only for a
// tracked subscription, and the integration suite checks it.)
func alertsQueryExportedMetrics(t *testing.T, metrics string) {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join(chartDir, "alerts", "orgscaler.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`\b(orgscaler_[a-z_]+|grpc_server_[a-z_]+)\b`).FindAllString(string(rules), -1) {
		if name != "orgscaler_depth_unknown" && !strings.Contains(metrics, "\n"+name) {
			t.Errorf("the alerts query %s, which the fleet's /metrics does not show", name)
		}
	}
}
