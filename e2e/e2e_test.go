//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
)

var (
	c         *cluster
	kube      *kubernetes.Clientset
	bins      string // our scaler and scalerctl, built for the suite
	scalerBin string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	cache := os.Getenv("E2E_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "orgscaler-e2e")
	}
	dir, err := os.MkdirTemp("", "orgscaler-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keep := false
	defer func() {
		if keep {
			fmt.Fprintf(os.Stderr, "logs and data kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	bins = filepath.Join(dir, "bin")
	for _, cmd := range []string{"scaler", "scalerctl"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bins, cmd), "../cmd/"+cmd).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", cmd, err, out)
			return 1
		}
	}
	scalerBin = filepath.Join(bins, "scaler")
	c, err = startCluster(dir, cache)
	defer func() {
		if c != nil {
			c.stopAll()
		}
	}()
	if err != nil {
		keep = true
		fmt.Fprintf(os.Stderr, "control plane: %v\n", err)
		if c != nil {
			for _, p := range c.procs {
				fmt.Fprintf(os.Stderr, "--- %s\n%s\n", p.name, tail(p.log, 20))
			}
		}
		return 1
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kube = kubernetes.NewForConfigOrDie(cfg)
	code := m.Run()
	keep = code != 0
	if code != 0 {
		for _, p := range c.procs {
			fmt.Fprintf(os.Stderr, "--- %s (last lines)\n%s\n", p.name, tail(p.log, 40))
		}
	}
	return code
}

// ourScaler is the scaler binary under test.
type ourScaler struct {
	p                                *proc
	keda, api, pubsub, data, metrics string
	extra                            []string // more flags
}

func newScaler(data string, extra ...string) *ourScaler {
	return &ourScaler{keda: fmt.Sprintf("127.0.0.1:%d", freePort()), api: fmt.Sprintf("127.0.0.1:%d", freePort()),
		pubsub: fmt.Sprintf("127.0.0.1:%d", freePort()), data: filepath.Join(c.dir, data),
		metrics: fmt.Sprintf("127.0.0.1:%d", freePort()), extra: extra}
}

func startScaler(t *testing.T, s *ourScaler) {
	t.Helper()
	p, err := c.start(filepath.Base(s.data), scalerBin, nil, append([]string{
		"--listen", s.keda, "--api-listen", s.api, "--data-dir", s.data, "--metrics-listen", s.metrics,
		"--pubsub=embedded", "--pubsub-listen", s.pubsub, "--depth-refresh", "500ms",
		"--kubeconfig", c.kubeconfig, "--log-level", "debug"}, s.extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.p = p
	waitTCP(t, s.keda)
	waitTCP(t, s.api)
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *ourScaler) ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bins, "scalerctl"), append([]string{"--addr", s.api}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("scalerctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// trivialScaler is the baseline: an external-push scaler that answers a
// flag and pushes true the moment it flips.
type trivialScaler struct {
	kedapb.UnimplementedExternalScalerServer
	active atomic.Bool
	mu     sync.Mutex
	subs   []chan struct{}
	addr   string
}

func (s *trivialScaler) IsActive(context.Context, *kedapb.ScaledObjectRef) (*kedapb.IsActiveResponse, error) {
	return &kedapb.IsActiveResponse{Result: s.active.Load()}, nil
}

func (s *trivialScaler) GetMetricSpec(context.Context, *kedapb.ScaledObjectRef) (*kedapb.GetMetricSpecResponse, error) {
	return &kedapb.GetMetricSpecResponse{MetricSpecs: []*kedapb.MetricSpec{{MetricName: "trivial", TargetSize: 1}}}, nil
}

func (s *trivialScaler) GetMetrics(context.Context, *kedapb.GetMetricsRequest) (*kedapb.GetMetricsResponse, error) {
	v := int64(0)
	if s.active.Load() {
		v = 1
	}
	return &kedapb.GetMetricsResponse{MetricValues: []*kedapb.MetricValue{{MetricName: "trivial", MetricValue: v}}}, nil
}

func (s *trivialScaler) StreamIsActive(_ *kedapb.ScaledObjectRef, stream kedapb.ExternalScaler_StreamIsActiveServer) error {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	s.mu.Unlock()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-ch:
			if err := stream.Send(&kedapb.IsActiveResponse{Result: s.active.Load()}); err != nil {
				return err
			}
		}
	}
}

func (s *trivialScaler) set(v bool) {
	s.active.Store(v)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func startTrivial(t *testing.T) *trivialScaler {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &trivialScaler{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	kedapb.RegisterExternalScalerServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return s
}

func replicas(t *testing.T, name string) int32 {
	t.Helper()
	d, err := kube.AppsV1().Deployments("ml").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

// waitReplicas polls spec.replicas of a Deployment in ml every 5ms until
// want, and returns when.
func waitReplicas(t *testing.T, name string, want func(int32) bool, what string, timeout time.Duration) time.Time {
	t.Helper()
	return waitReplicasIn(t, "ml", name, want, what, timeout)
}

func waitReplicasIn(t *testing.T, ns, name string, want func(int32) bool, what string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, err := kube.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && want(*d.Spec.Replicas) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			got := "?"
			if err == nil {
				got = fmt.Sprint(*d.Spec.Replicas)
			}
			t.Fatalf("%s: %s not reached within %s (replicas %s, err %v)", name, what, timeout, got, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func is(n int32) func(int32) bool      { return func(r int32) bool { return r == n } }
func atLeast(n int32) func(int32) bool { return func(r int32) bool { return r >= n } }

const deployments = `apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME, namespace: ml}
spec:
  replicas: 1
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec: {containers: [{name: c, image: registry.k8s.io/pause:3.10}]}
`

var workloads = []string{"gpu-worker-transcribe", "gpu-worker-embed", "pynode-acme", "model-acme-summarizer", "model-acme-classifier", "trivial"}

// forTest rewrites a shipped ScaledObjects file for this run: our scaler's
// address, and seconds instead of minutes so the suite is quick.
func forTest(t *testing.T, file, scalerAddr string) []byte {
	t.Helper()
	return rewrite(t, filepath.Join("..", "deploy", "scaledobjects", file), [][2]string{
		{"orgscaler.keda.svc.cluster.local:9090", scalerAddr},
		{"pollingInterval: 30", "pollingInterval: 1"}, {"cooldownPeriod: 600", "cooldownPeriod: 3"},
		{"cooldownPeriod: 300", "cooldownPeriod: 3"}, {"warmFor: 1h", "warmFor: 2s"},
	})
}

// rewrite reads a shipped file with each [old, new] replaced; a file that
// no longer has an old string fails, so the suite keeps up with the file.
func rewrite(t *testing.T, path string, replace [][2]string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range replace {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("%s no longer has %q: update the suite", path, r[0])
		}
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	return []byte(s)
}

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	s := newScaler("scaler-data")
	startScaler(t, s)
	trivial := startTrivial(t)

	ps := pubsubtest.Client(t, s.pubsub, "demo-project")
	createSubscriptions := func() {
		for _, name := range []string{"transcribe", "embed", "acme-classify"} {
			pubsubtest.Create(t, ps, "projects/demo-project/subscriptions/"+name)
		}
	}
	createSubscriptions()

	if err := c.kubectl(nil, "create", "namespace", "ml"); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, w := range workloads {
		all.WriteString(strings.ReplaceAll(deployments, "NAME", w) + "---\n")
	}
	if err := c.kubectl([]byte(all.String()), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	t.Run("shipped files apply against KEDA's CRDs", func(t *testing.T) {
		for _, f := range []string{"scaledobjects.yaml", "hybrid-scaledobjects.yaml"} {
			if err := c.kubectl(nil, "apply", "--dry-run=server", "-f", filepath.Join("..", "deploy", "scaledobjects", f)); err != nil {
				t.Fatal(err)
			}
		}
	})

	// The org sleeps: a 1s window, then every one of its workloads goes to 0.
	s.ctl(t, "activity", "acme")
	s.ctl(t, "org", "set", "acme", "--idle-window", "1s")
	if err := c.kubectl(forTest(t, "scaledobjects.yaml", s.keda), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	trivialSO := fmt.Sprintf(`apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: trivial, namespace: ml}
spec:
  scaleTargetRef: {name: trivial}
  minReplicaCount: 0
  maxReplicaCount: 1
  pollingInterval: 1
  cooldownPeriod: 3
  triggers:
    - type: external-push
      metadata: {scalerAddress: "%s"}
`, trivial.addr)
	if err := c.kubectl([]byte(trivialSO), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	t.Run("a dormant org's workloads go to zero", func(t *testing.T) {
		for _, w := range []string{"pynode-acme", "model-acme-summarizer", "model-acme-classifier", "gpu-worker-transcribe", "gpu-worker-embed", "trivial"} {
			waitReplicas(t, w, is(0), "0 replicas", 60*time.Second)
		}
	})

	t.Run("activity wakes every workload of the org through the push stream", func(t *testing.T) {
		// Baseline first: the trivial scaler flips false → true.
		trivialStart := time.Now()
		trivial.set(true)
		trivialAt := waitReplicas(t, "trivial", is(1), "1 replica", 30*time.Second)

		start := time.Now()
		out := s.ctl(t, "activity", "acme")
		if !strings.Contains(out, "woke acme") {
			t.Fatalf("scalerctl: %s", out)
		}
		ours := waitReplicas(t, "pynode-acme", is(1), "1 replica", 30*time.Second)
		for _, w := range []string{"model-acme-summarizer", "model-acme-classifier"} {
			waitReplicas(t, w, atLeast(1), "awake", 5*time.Second)
		}
		t.Logf("WAKE activity→replicas=1: ours %s, trivial external-push scaler %s",
			ours.Sub(start).Round(time.Millisecond), trivialAt.Sub(trivialStart).Round(time.Millisecond))
		writeFigure(t, "wake", ours.Sub(start), trivialAt.Sub(trivialStart))
		if ours.Sub(start) > time.Second {
			t.Errorf("the pynode took %s to wake, want within a second", ours.Sub(start))
		}
	})

	t.Run("KEDA's view: HPA, READY and ACTIVE, our Events", func(t *testing.T) {
		hpa, err := c.kubectlOut(nil, "get", "hpa", "keda-hpa-pynode-acme", "-n", "ml", "-o", "jsonpath={.spec.metrics[0].external.metric.name} {.spec.metrics[0].external.target.averageValue}")
		if err != nil || !strings.HasPrefix(hpa, "s0-pynode-acme-") || !strings.HasSuffix(hpa, " 1") {
			t.Fatalf("HPA should carry our metric with target 1: %q %v", hpa, err)
		}
		// READY True and ACTIVE True, as `kubectl get scaledobject` shows.
		var so string
		deadline0 := time.Now().Add(30 * time.Second)
		for so != "True True" {
			so, _ = c.kubectlOut(nil, "get", "scaledobject", "pynode-acme", "-n", "ml", "-o",
				`jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Active")].status}`)
			if time.Now().After(deadline0) {
				out, _ := c.kubectlOut(nil, "get", "scaledobject", "-n", "ml")
				t.Fatalf("pynode-acme: want READY True and ACTIVE True, got %q\n%s", so, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		table, _ := c.kubectlOut(nil, "get", "scaledobject", "-n", "ml")
		t.Logf("kubectl get scaledobject -n ml:\n%s", table)
		var desc string
		deadline := time.Now().Add(30 * time.Second)
		for {
			desc, _ = c.kubectlOut(nil, "describe", "scaledobject", "pynode-acme", "-n", "ml")
			if strings.Contains(desc, "OrgWoke") && strings.Contains(desc, "orgscaler") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("our Events are not on the ScaledObject:\n%s", desc)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("kubectl describe scaledobject pynode-acme:\n%s", desc[strings.Index(desc, "Events:"):])
	})

	t.Run("a GPU worker follows the backlog, and a hint wakes it first", func(t *testing.T) {
		pub := ps.Publisher("projects/demo-project/topics/transcribe")
		for i := range 3 {
			if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(fmt.Sprint(i))}).Get(ctx); err != nil {
				t.Fatal(err)
			}
		}
		pub.Stop()
		waitReplicas(t, "gpu-worker-transcribe", atLeast(1), "awake on backlog", 30*time.Second)
		rctx, cancel := context.WithCancel(ctx)
		var acked atomic.Int64
		go func() {
			_ = ps.Subscriber("projects/demo-project/subscriptions/transcribe").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
				m.Ack()
				if acked.Add(1) == 3 {
					cancel()
				}
			})
		}()
		waitReplicas(t, "gpu-worker-transcribe", is(0), "back to 0 once acked", 60*time.Second)
		cancel()

		start := time.Now()
		s.ctl(t, "hint", "projects/demo-project/subscriptions/embed", "4")
		at := waitReplicas(t, "gpu-worker-embed", is(1), "woken by the hint", 30*time.Second)
		t.Logf("HINT hint→replicas=1: %s", at.Sub(start).Round(time.Millisecond))
	})

	t.Run("the scaler restarts: streams reconnect, nothing changes wrongly", func(t *testing.T) {
		s.ctl(t, "org", "set", "acme", "--idle-window", "1h") // keep acme awake across the restart
		s.ctl(t, "activity", "acme")
		s.p.stop(syscall.SIGTERM)
		startScaler(t, s)
		createSubscriptions() // the embedded Pub/Sub lives in memory: it comes back empty
		if r := replicas(t, "pynode-acme"); r != 1 {
			t.Fatalf("pynode-acme changed to %d across the restart", r)
		}
		// Sleep and wake again through the new scaler's push stream.
		s.ctl(t, "org", "set", "acme", "--idle-window", "1s")
		waitReplicas(t, "pynode-acme", is(0), "0 after the org sleeps again", 60*time.Second)
		start := time.Now()
		s.ctl(t, "activity", "acme")
		at := waitReplicas(t, "pynode-acme", is(1), "woken after the restart", 30*time.Second)
		t.Logf("WAKE after restart: %s", at.Sub(start).Round(time.Millisecond))
	})

	t.Run("hybrid: the primary stays hot while the rest are cold", func(t *testing.T) {
		if err := c.kubectl(forTest(t, "hybrid-scaledobjects.yaml", s.keda), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		waitReplicas(t, "gpu-worker-transcribe", atLeast(1), "primary hot", 30*time.Second)
		waitReplicas(t, "gpu-worker-embed", is(0), "the rest cold", 60*time.Second)
		if r := replicas(t, "gpu-worker-transcribe"); r < 1 {
			t.Fatalf("primary went to %d", r)
		}
	})
}

// writeFigure records a measured pair for docs/BENCHMARKS.md.
func writeFigure(t *testing.T, name string, ours, trivial time.Duration) {
	p := os.Getenv("E2E_FIGURES")
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Log(err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s ours=%s trivial=%s\n", name, ours, trivial)
}
