//go:build e2e

package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
)

// With a cluster, the KEDA port answers only the triggers of real
// ScaledObjects: a ScaledObject is created, answered, deleted, then
// refused, and what was kept for it (explain memory, its subscription)
// goes with it.
func TestOnlyRealScaledObjects(t *testing.T) {
	ctx := context.Background()
	s := newScaler("scaler-trust")
	startScaler(t, s)
	t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })
	conn, err := grpc.NewClient(s.keda, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keda := kedapb.NewExternalScalerClient(conn)
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the KEDA port is not ready once the informers synced: %v %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pubsubtest.Create(t, pubsubtest.Client(t, s.pubsub, "demo-project"), "projects/demo-project/subscriptions/trusted")

	_ = c.kubectl(nil, "create", "namespace", "ml") // may exist from another test
	if err := c.kubectl([]byte(strings.ReplaceAll(deployments, "NAME", "model-trusted")), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	md := map[string]string{"scalerAddress": s.keda, "workload": "model", "org": "trusted",
		"subscription": "projects/demo-project/subscriptions/trusted"}
	so := `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: model-trusted, namespace: ml}
spec:
  scaleTargetRef: {name: model-trusted}
  minReplicaCount: 0
  maxReplicaCount: 1
  pollingInterval: 1
  cooldownPeriod: 3
  triggers:
    - type: external
      metadata:
        scalerAddress: "ADDR"
        workload: model
        org: trusted
        subscription: projects/demo-project/subscriptions/trusted
`
	if err := c.kubectl([]byte(strings.ReplaceAll(so, "ADDR", s.keda)), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	real := &kedapb.ScaledObjectRef{Namespace: "ml", Name: "model-trusted", ScalerMetadata: md}
	deadline = time.Now().Add(30 * time.Second)
	for {
		r, err := keda.IsActive(ctx, real)
		if err == nil && r.GetResult() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the real ScaledObject is not answered: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := s.ctl(t, "depth"); !strings.Contains(out, "trusted") {
		t.Fatalf("the trigger's subscription should be tracked:\n%s", out)
	}
	if out := s.ctl(t, "explain", "ml/model-trusted"); !strings.Contains(out, "trusted") {
		t.Fatalf("explain of the real ScaledObject:\n%s", out)
	}
	if kept := keptGauges(t, s.metrics); kept["explain_scaledobjects"] != 1 || kept["subscriptions"] != 1 || kept["cluster_scaledobjects"] < 1 {
		t.Fatalf("while it exists, the scaler keeps its state: %v", kept)
	}

	for name, ref := range map[string]*kedapb.ScaledObjectRef{
		"an invented ScaledObject":         {Namespace: "ml", Name: "invented", ScalerMetadata: map[string]string{"workload": "pynode", "org": "invented-org"}},
		"an invented org on a real object": {Namespace: "ml", Name: "model-trusted", ScalerMetadata: map[string]string{"workload": "pynode", "org": "invented-org"}},
		"no ScaledObject named (grpcurl)":  {ScalerMetadata: map[string]string{"workload": "pynode", "org": "invented-org"}},
	} {
		_, err := keda.GetMetricSpec(ctx, ref)
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "ScaledObjects and ScaledJobs in its cluster") {
			t.Errorf("%s: want NotFound, got %v", name, err)
		}
	}
	out, err := exec.Command(filepath.Join(bins, "scalerctl"), "--addr", s.api, "org", "get", "invented-org").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NotFound") {
		t.Fatalf("a refused request must create no org: %v\n%s", err, out)
	}

	if err := c.kubectl(nil, "delete", "scaledobject", "model-trusted", "-n", "ml"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, err := keda.IsActive(ctx, real)
		if status.Code(err) == codes.NotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a deleted ScaledObject is still answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(30 * time.Second)
	for strings.Contains(s.ctl(t, "depth"), "trusted") {
		if time.Now().After(deadline) {
			t.Fatalf("the deleted ScaledObject's subscription is still tracked:\n%s", s.ctl(t, "depth"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err = exec.Command(filepath.Join(bins, "scalerctl"), "--addr", s.api, "explain", "ml/model-trusted").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NotFound") {
		t.Fatalf("explain memory of a deleted ScaledObject must go: %v\n%s", err, out)
	}
	// Nothing else is kept for it either: the scaler's own gauges say so.
	deadline = time.Now().Add(30 * time.Second)
	for {
		kept := keptGauges(t, s.metrics)
		if len(kept) > 0 && kept["explain_scaledobjects"]+kept["last_answers"]+kept["ledger_workloads"]+kept["subscriptions"]+kept["event_scaledobjects"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state kept for a deleted ScaledObject: %v", kept)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keptGauges reads orgscaler_kept{what=...} from /metrics.
func keptGauges(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(scrapeMetrics(t, addr), "\n") {
		if !strings.HasPrefix(line, `orgscaler_kept{what="`) {
			continue
		}
		rest := strings.TrimPrefix(line, `orgscaler_kept{what="`)
		what, val, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(val, 64)
		if err == nil {
			out[what] = v
		}
	}
	return out
}

// scrapeMetrics reads the scaler's /metrics at addr.
func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
