//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The ScaledObject half of a KServe model in Standard mode, as shipped in
// deploy/kserve, against a Deployment named as KServe names an
// InferenceService's predictor: KEDA's operator takes it to zero while the
// org sleeps and wakes it with the org.
func TestKServePredictorWakes(t *testing.T) {
	s := newScaler("scaler-kserve")
	startScaler(t, s)
	t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })
	so := rewrite(t, filepath.Join("..", "deploy", "kserve", "scaledobject.yaml"), [][2]string{
		{"namespace: ml", "namespace: kserve"}, {"org: acme", "org: kserveorg"},
		{"orgscaler.keda.svc.cluster.local:9090", s.keda}, {"pollingInterval: 30", "pollingInterval: 1"}, {"warmFor: 1h", "warmFor: 2s"},
	})
	_ = c.kubectl(nil, "create", "namespace", "kserve")
	predictor := strings.ReplaceAll(strings.ReplaceAll(deployments, "NAME", "acme-summarizer-predictor"), "namespace: ml", "namespace: kserve")
	if err := c.kubectl([]byte(predictor), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	s.ctl(t, "activity", "kserveorg")
	s.ctl(t, "org", "set", "kserveorg", "--idle-window", "1s")
	// Inactive before KEDA first asks: an active answer would hold the
	// predictor up for the cooldownPeriod (10 minutes).
	waitFor(t, 30*time.Second, "the model's answer inactive", func() (string, bool) {
		out := s.ctl(t, "explain", "--meta", "workload=model,org=kserveorg,warmFor=2s,gpusPerReplica=1")
		return out, strings.Contains(out, "inactive")
	})
	if err := c.kubectl(so, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitReplicasIn(t, "kserve", "acme-summarizer-predictor", is(0), "0 while the org sleeps", 60*time.Second)
	start := time.Now()
	s.ctl(t, "activity", "kserveorg")
	at := waitReplicasIn(t, "kserve", "acme-summarizer-predictor", is(1), "woken with the org", 30*time.Second)
	t.Logf("WAKE of a KServe predictor: %s", at.Sub(start).Round(time.Millisecond))
}
