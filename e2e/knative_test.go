//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

var (
	ksvcs = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	krevs = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "revisions"}
)

const knNS = "kn"

// A Knative Service and its Revisions, created as a team's deploys make
// them, their status set as Knative's controller would: the scaler, with
// the chart's RBAC for --knative and nothing more, keeps the latest ready
// Revision's min-scale at the org's warmth, 1 → 0 → 1, gives a dormant
// org's new Revision 0 at once, never changes the Service or touches an
// unlabelled one, and after a restart patches nothing.
func TestKnativeMinScaleFollowsTheOrg(t *testing.T) {
	applyCRDs(t, "knative")
	ctx := context.Background()
	dir := filepath.Join(c.dir, "knative")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rbac := helmTemplate(t, "--set", "knative.enabled=true", "--show-only", "templates/serviceaccount.yaml",
		"--show-only", "templates/rbac.yaml", "--show-only", "templates/knative-rbac.yaml")
	if err := c.kubectl(rbac, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	sa := "system:serviceaccount:" + chartNS + ":" + fullname
	for _, p := range []struct {
		verb, resource string
		want           string
	}{
		{"get", "services.serving.knative.dev", "yes"}, {"list", "services.serving.knative.dev", "yes"},
		{"watch", "services.serving.knative.dev", "yes"}, {"get", "revisions.serving.knative.dev", "yes"},
		{"watch", "revisions.serving.knative.dev", "yes"}, {"patch", "revisions.serving.knative.dev", "yes"},
		{"patch", "services.serving.knative.dev", "no"}, {"update", "services.serving.knative.dev", "no"},
		{"create", "revisions.serving.knative.dev", "no"}, {"update", "revisions.serving.knative.dev", "no"},
		{"delete", "revisions.serving.knative.dev", "no"}, {"patch", "podautoscalers.autoscaling.internal.knative.dev", "no"},
	} {
		out, _ := c.kubectlOut(nil, "auth", "can-i", p.verb, p.resource, "--all-namespaces", "--as", sa)
		if got := strings.TrimSpace(out); got != p.want {
			t.Errorf("the chart's ServiceAccount: can-i %s %s = %q, want %q", p.verb, p.resource, got, p.want)
		}
	}

	_ = c.kubectl(nil, "create", "namespace", knNS)
	for _, obj := range []string{
		ksvc("pynode-kn", `{orgscaler.io/org: knorg, orgscaler.io/gpus: "2"}`), krev("pynode-kn-00001", "pynode-kn", ""),
		ksvc("unlabelled", "{}"), krev("unlabelled-00001", "unlabelled", ""),
	} {
		if err := c.kubectl([]byte(obj), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	}
	dyn := dynamicClient(t)
	ready(t, dyn, "pynode-kn", "pynode-kn-00001")
	ready(t, dyn, "unlabelled", "unlabelled-00001")
	generation := get(t, dyn, ksvcs, "pynode-kn").GetGeneration()
	untouched := get(t, dyn, krevs, "unlabelled-00001").GetResourceVersion()

	s := newScaler("scaler-knative", "--knative", "--kubeconfig", saKubeconfig(t, dir, fullname))
	startScaler(t, s)
	t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })
	minScale(t, dyn, "pynode-kn-00001", "1", "a new org is warm", 30*time.Second)
	s.ctl(t, "org", "set", "knorg", "--idle-window", "1s")
	minScale(t, dyn, "pynode-kn-00001", "0", "dormant", 30*time.Second)

	conn, err := grpc.NewClient(s.api, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seen := watchMinScale(t, dyn, "pynode-kn-00001", "1")
	start := time.Now()
	if _, err := pb.NewActivityServiceClient(conn).RecordActivity(ctx, &pb.RecordActivityRequest{Org: "knorg"}); err != nil {
		t.Fatal(err)
	}
	woke := wait(t, seen, "woken", 10*time.Second)
	t.Logf("WAKE of a Knative Service (activity to its Revision's min-scale 1): %s", woke.Sub(start).Round(time.Millisecond))
	if d := woke.Sub(start); d > time.Second {
		t.Errorf("the wake reached the Revision %s after the activity; want it within 100ms, and at most a second on a loaded machine", d)
	}
	minScale(t, dyn, "pynode-kn-00001", "0", "dormant again", 30*time.Second)

	// A deploy of the dormant org: the new Revision comes with its
	// template's min-scale 1, and gets 0 the moment it is ready.
	if err := c.kubectl([]byte(krev("pynode-kn-00002", "pynode-kn", "1")), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	// Timed from the moment a watch sees the Service's new ready
	// Revision, as Knative's own controllers would: the API server may
	// deliver a change some time after it is written.
	seen = watchMinScale(t, dyn, "pynode-kn-00002", "0")
	isReady := watchUntil(t, dyn, ksvcs, "pynode-kn", func(u *unstructured.Unstructured) bool {
		latest, _, _ := unstructured.NestedString(u.Object, "status", "latestReadyRevisionName")
		return latest == "pynode-kn-00002"
	})
	ready(t, dyn, "pynode-kn", "pynode-kn-00002")
	start = wait(t, isReady, "the Service's new ready Revision seen", 10*time.Second)
	held := wait(t, seen, "a dormant org's new Revision held at 0", 10*time.Second)
	t.Logf("DEPLOY of a dormant org: new Revision at min-scale 0 %s after it is ready", held.Sub(start).Round(time.Millisecond))
	if d := held.Sub(start); d > time.Second {
		t.Errorf("a dormant org's new Revision got min-scale 0 %s after it was ready; want at once", d)
	}

	// An older Revision given a floor (a traffic split pinned to it, made
	// from a template with min-scale 1) is let go to 0.
	seen = watchMinScale(t, dyn, "pynode-kn-00001", "0")
	if _, err := dyn.Resource(krevs).Namespace(knNS).Patch(ctx, "pynode-kn-00001", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"autoscaling.knative.dev/min-scale":"1"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(t, seen, "an older Revision's floor taken away", 10*time.Second)

	waitFor(t, 30*time.Second, "OrgWoke and OrgDormant Events on the Knative Service", func() (string, bool) {
		ev, err := kube.EventsV1().Events(knNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error(), false
		}
		reasons := map[string]bool{}
		for _, e := range ev.Items {
			if e.Regarding.Kind == "Service" && e.Regarding.Name == "pynode-kn" {
				reasons[e.Reason] = true
			}
		}
		return fmt.Sprint(reasons), reasons["OrgWoke"] && reasons["OrgDormant"]
	})
	if out := s.ctl(t, "explain", "--meta", "workload=pynode,org=knorg"); !strings.Contains(out, "kn/pynode-kn: revision pynode-kn-00002 min-scale 0") {
		t.Errorf("explain does not show the org's Knative Service:\n%s", out)
	}
	waitFor(t, 30*time.Second, "the Knative Service in the GPU-hours report", func() (string, bool) {
		r, err := pb.NewAdminServiceClient(conn).Report(ctx, &pb.ReportRequest{})
		if err != nil {
			return err.Error(), false
		}
		for _, w := range r.GetWorkloads() {
			if w.GetScaledObject() == knNS+"/pynode-kn" {
				return w.String(), w.GetKind() == "pynode" && w.GetGpusPerReplica() == 2 && w.GetWakes()["activity"] >= 1 && w.GetActive() != nil
			}
		}
		return fmt.Sprint(r.GetWorkloads()), false
	})

	// Restarted, it reads everything again and finds nothing to patch.
	revs := map[string]string{}
	for _, name := range []string{"pynode-kn-00001", "pynode-kn-00002"} {
		revs[name] = get(t, dyn, krevs, name).GetResourceVersion()
	}
	s.p.stop(syscall.SIGTERM)
	startScaler(t, s)
	labelled, err := dyn.Resource(ksvcs).List(ctx, metav1.ListOptions{LabelSelector: "orgscaler.io/org"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every labelled Service reconciled after the restart", func() (string, bool) {
		n := metric(t, s, `orgscaler_knative_reconciles_total{result="unchanged"}`)
		return fmt.Sprint(n), n >= float64(len(labelled.Items))
	})
	if n := metric(t, s, `orgscaler_knative_reconciles_total{result="patched"}`); n != 0 {
		t.Errorf("after a restart with every Revision right, %v patches; want none", n)
	}
	for name, rv := range revs {
		if got := get(t, dyn, krevs, name).GetResourceVersion(); got != rv {
			t.Errorf("revision %s changed across a restart with nothing to do (resourceVersion %s → %s)", name, rv, got)
		}
	}
	if g := get(t, dyn, ksvcs, "pynode-kn").GetGeneration(); g != generation {
		t.Errorf("the Knative Service's generation went %d → %d: the scaler must patch Revisions, never the Service", generation, g)
	}
	u := get(t, dyn, krevs, "unlabelled-00001")
	if u.GetResourceVersion() != untouched {
		t.Errorf("the unlabelled Service's Revision was changed: %v", u.GetAnnotations())
	}
}

func ksvc(name, labels string) string {
	return fmt.Sprintf(`apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: %s, namespace: %s, labels: %s}
spec: {template: {spec: {containers: [{image: registry.k8s.io/pause:3.10}]}}}
`, name, knNS, labels)
}

// krev is a Revision as Knative makes it from its Service's template
// (with the template's min-scale, when given).
func krev(name, service, minScale string) string {
	annotations := "{}"
	if minScale != "" {
		annotations = fmt.Sprintf(`{autoscaling.knative.dev/min-scale: %q}`, minScale)
	}
	generation := strings.TrimLeft(name[strings.LastIndex(name, "-")+1:], "0") // NAME-00002 is the second
	return fmt.Sprintf(`apiVersion: serving.knative.dev/v1
kind: Revision
metadata:
  name: %s
  namespace: %s
  labels: {serving.knative.dev/service: %s, serving.knative.dev/configuration: %s, serving.knative.dev/configurationGeneration: %q}
  annotations: %s
spec: {containers: [{image: registry.k8s.io/pause:3.10}]}
`, name, knNS, service, service, generation, annotations)
}

// ready sets the Service's status as Knative's controller does once rev
// is ready.
func ready(t *testing.T, dyn dynamic.Interface, service, rev string) {
	t.Helper()
	patch := fmt.Sprintf(`{"status":{"latestReadyRevisionName":%q,"latestCreatedRevisionName":%q}}`, rev, rev)
	if _, err := dyn.Resource(ksvcs).Namespace(knNS).Patch(context.Background(), service, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
}

func dynamicClient(t *testing.T) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return dynamic.NewForConfigOrDie(cfg)
}

func get(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := dyn.Resource(gvr).Namespace(knNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// minScale polls the Revision every 5ms until its min-scale is want, and
// returns when.
func minScale(t *testing.T, dyn dynamic.Interface, rev, want, what string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := get(t, dyn, krevs, rev).GetAnnotations()["autoscaling.knative.dev/min-scale"]
		if got == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %s: min-scale %q (%s) not reached within %s; it is %q", rev, want, what, timeout, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watchMinScale watches the Revision from now, and sends when its
// min-scale becomes want (a watch, not a poll: a read may be served a
// little behind the latest write).
func watchMinScale(t *testing.T, dyn dynamic.Interface, rev, want string) <-chan time.Time {
	t.Helper()
	return watchUntil(t, dyn, krevs, rev, func(u *unstructured.Unstructured) bool {
		return u.GetAnnotations()["autoscaling.knative.dev/min-scale"] == want
	})
}

// watchUntil watches one object from now, and sends when done says so.
func watchUntil(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, name string, done func(*unstructured.Unstructured) bool) <-chan time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rv := get(t, dyn, gvr, name).GetResourceVersion()
	w, err := dyn.Resource(gvr).Namespace(knNS).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	at := make(chan time.Time, 1)
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if u, ok := ev.Object.(*unstructured.Unstructured); ok && done(u) {
				at <- time.Now()
				return
			}
		}
	}()
	return at
}

func wait(t *testing.T, at <-chan time.Time, what string, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case when := <-at:
		return when
	case <-time.After(timeout):
		t.Fatalf("%s: not within %s", what, timeout)
		return time.Time{}
	}
}

// saKubeconfig is a kubeconfig holding a token of the ServiceAccount sa
// in chartNS: what the scaler's pod would run with.
func saKubeconfig(t *testing.T, dir, sa string) string {
	t.Helper()
	token, err := c.kubectlOut(nil, "create", "token", sa, "-n", chartNS, "--duration=1h")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, sa+"-kubeconfig")
	if err := os.WriteFile(path, kubeconfigFor(c.apiserver, strings.TrimSpace(token)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// metric reads one series from the scaler's /metrics; a series missing
// fails the test (counters the tests read are exported from the start).
func metric(t *testing.T, s *ourScaler, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(scrapeMetrics(t, s.metrics))
	if m == nil {
		t.Fatalf("%s has no series %s", s.metrics, series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
