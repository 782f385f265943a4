//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orgscaler/orgscaler/internal/certtest"
)

// The release the suite installs: its objects are e2e-orgscaler-*, apart
// from the other tests' orgscaler-* in the same namespace.
const (
	release   = "e2e"
	fullname  = "e2e-orgscaler"
	chartNS   = "keda" // the ClusterTriggerAuthentication reads Secrets from KEDA's namespace
	chartDir  = "../deploy/helm/orgscaler"
	chartApps = "chart" // the example ScaledObjects' namespace
)

// helmTemplate renders the chart with helm's own renderer.
func helmTemplate(t *testing.T, args ...string) []byte {
	t.Helper()
	helm := os.Getenv("HELM")
	if helm == "" {
		helm = filepath.Join("..", "bin", "helm")
	}
	out, err := exec.Command(helm, append([]string{"template", release, chartDir, "--namespace", chartNS}, args...)...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += "\n" + string(ee.Stderr)
		}
		t.Fatalf("helm template %s (make e2e builds helm into ./bin): %s", strings.Join(args, " "), msg)
	}
	return out
}

// applyCRDs installs the CRDs e2e/tools/build.sh unpacked into the cache
// under crds/NAME, and waits until the API server serves them.
func applyCRDs(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		dir := filepath.Join(filepath.Dir(c.crds), "crds", name)
		if err := c.kubectl(nil, "apply", "--server-side", "-f", dir); err != nil {
			t.Fatalf("%v (run e2e/tools/build.sh)", err)
		}
		if err := c.kubectl(nil, "wait", "--for=condition=Established", "--timeout=60s", "-f", dir); err != nil {
			t.Fatal(err)
		}
	}
}

// Everything the chart can render, with its defaults and with every
// option on (cert-manager's Certificates, the ServiceMonitor, the
// dashboard, the examples), is accepted by the API server and the real
// CRDs' schemas.
func TestChartRendersWhatTheAPIServerAccepts(t *testing.T) {
	applyCRDs(t, "cert-manager", "prometheus-operator")
	for _, ns := range []string{chartApps, "monitoring"} {
		_ = c.kubectl(nil, "create", "namespace", ns) // may exist from another test
	}
	// The examples go to this test's namespace, not the full values' ml
	// (TestEndToEnd's).
	full := []string{"-f", filepath.Join(chartDir, "ci", "full-values.yaml"), "--set", "examples.namespace=" + chartApps}
	for _, values := range [][]string{nil, full} {
		out := helmTemplate(t, values...)
		if err := c.kubectl(out, "apply", "--dry-run=server", "-f", "-"); err != nil {
			t.Fatalf("values %v: %v", values, err)
		}
	}
}

// The chart, installed with TLS on: helm renders it, the API server takes
// every object, the scaler runs as the StatefulSet's pod would (its
// ConfigMap's flags, its env, its Secrets mounted as files, its
// ServiceAccount's token), and KEDA's own operator wakes the chart's
// example pynode over mTLS through the chart's ClusterTriggerAuthentication.
func TestChartInstallsAndWakes(t *testing.T) {
	applyCRDs(t, "prometheus-operator")
	dir := filepath.Join(c.dir, "chart")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	serverCA, kedaCA, apiCA := certtest.NewCA(t, "server-ca"), certtest.NewCA(t, "keda-client-ca"), certtest.NewCA(t, "api-client-ca")
	server := serverCA.Issue(t, certtest.Spec{CommonName: fullname, DNSNames: []string{fullname + "." + chartNS + ".svc"}})
	kedaClient := kedaCA.Issue(t, certtest.Spec{CommonName: "keda-operator", Client: true})
	serverCAFile := filepath.Join(dir, "server-ca.crt")
	certtest.WriteFile(t, serverCAFile, serverCA.PEM)
	// The Secrets in cert-manager's layout, under the chart's names.
	for name, data := range map[string]map[string][]byte{
		fullname + "-tls":              {"tls.crt": server.CertPEM, "tls.key": server.KeyPEM, "ca.crt": serverCA.PEM},
		"keda-" + fullname + "-client": {"tls.crt": kedaClient.CertPEM, "tls.key": kedaClient.KeyPEM, "ca.crt": kedaCA.PEM},
		fullname + "-admin":            {"ca.crt": apiCA.PEM},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: chartNS}, Data: data}
		if _, err := kube.CoreV1().Secrets(chartNS).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	kedaPort, apiPort, metricsPort := freePort(), freePort(), freePort()
	manifests := helmTemplate(t,
		"--set", "tls.enabled=true",
		"--set", fmt.Sprintf("ports.keda=%d,ports.api=%d,ports.metrics=%d", kedaPort, apiPort, metricsPort),
		"--set", "flags.pubsub=none,flags.log-format=text",
		"--set", "metrics.serviceMonitor.enabled=true,dashboard.enabled=true",
		"--set", fmt.Sprintf("examples.enabled=true,examples.namespace=%s,examples.org=chartorg,examples.scalerAddress=127.0.0.1:%d", chartApps, kedaPort))
	_ = c.kubectl(nil, "create", "namespace", chartApps)
	for _, name := range []string{"pynode-chartorg", "model-chartorg-summarizer", "model-chartorg-classifier", "gpu-worker-transcribe", "gpu-worker-embed"} {
		d := strings.ReplaceAll(strings.ReplaceAll(deployments, "NAME", name), "namespace: ml", "namespace: "+chartApps)
		if err := c.kubectl([]byte(d), "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	}
	// The ScaledObjects wait until the scaler answers: applied after.
	scaler, examples := splitExamples(t, manifests)
	if err := c.kubectl(scaler, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	pod, ready := runPod(t, dir)
	t.Cleanup(func() { pod.stop(syscall.SIGTERM) })
	waitProbe(t, pod, ready)

	tokens := secretData(t, fullname+"-api-tokens")
	ctl := func(token string, args ...string) string {
		t.Helper()
		tf := filepath.Join(dir, "token")
		certtest.WriteFile(t, tf, tokens[token])
		out, err := exec.Command(filepath.Join(bins, "scalerctl"), append([]string{
			"--addr", fmt.Sprintf("127.0.0.1:%d", apiPort), "--ca", serverCAFile, "--token-file", tf}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("scalerctl %s: %v\n%s\n%s", strings.Join(args, " "), err, out, tail(pod.log, 30))
		}
		return string(out)
	}
	ctl("producer-token", "activity", "chartorg")
	ctl("admin-token", "org", "set", "chartorg", "--idle-window", "1s")
	// Dormant before KEDA first asks: an answer of active would hold the
	// pynode up for the example's cooldownPeriod (5 minutes).
	waitFor(t, 30*time.Second, "chartorg dormant after a 1s idle window", func() (string, bool) {
		out := ctl("admin-token", "org", "list", "--dormant")
		return out, strings.Contains(out, "chartorg")
	})

	if err := c.kubectl(examples, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitReplicasIn(t, chartApps, "pynode-chartorg", is(0), "0 once the org sleeps", 60*time.Second)
	start := time.Now()
	ctl("producer-token", "activity", "chartorg")
	at := waitReplicasIn(t, chartApps, "pynode-chartorg", is(1), "woken through the chart's install", 30*time.Second)
	t.Logf("WAKE through the chart (mTLS): %s", at.Sub(start).Round(time.Millisecond))

	// The wake is recorded on the ScaledObject (the chart's events RBAC).
	waitFor(t, 30*time.Second, "an OrgWoke Event on pynode-chartorg", func() (string, bool) {
		ev, err := kube.EventsV1().Events(chartApps).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err.Error(), false
		}
		for _, e := range ev.Items {
			if e.Regarding.Name == "pynode-chartorg" && e.Reason == "OrgWoke" {
				return "", true
			}
		}
		return tail(pod.log, 30), false
	})
}

// splitExamples parts the rendered chart into the scaler's objects and the
// example ScaledObjects.
func splitExamples(t *testing.T, manifests []byte) (scaler, examples []byte) {
	t.Helper()
	for _, doc := range strings.Split(string(manifests), "\n---\n") {
		if strings.Contains(doc, "# Source: orgscaler/templates/examples.yaml") {
			examples = append(examples, "---\n"+doc+"\n"...)
		} else {
			scaler = append(scaler, "---\n"+doc+"\n"...)
		}
	}
	if len(examples) == 0 {
		t.Fatal("the chart rendered no example ScaledObjects")
	}
	return scaler, examples
}

func secretData(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s, err := kube.CoreV1().Secrets(chartNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

// runPod starts the scaler as the kubelet would start the chart's
// StatefulSet's pod 0, read back from the API server: its ConfigMap's
// variables and its env, each volume written under dir and its mount path
// in any variable replaced by that directory, and in-cluster config as a
// kubeconfig holding its ServiceAccount's token. The binary is the one
// under test, not the image. It returns the URL of the pod's readiness
// probe.
func runPod(t *testing.T, dir string) (*proc, string) {
	t.Helper()
	ctx := context.Background()
	sts, err := kube.AppsV1().StatefulSets(chartNS).Get(ctx, fullname, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := sts.Spec.Template.Spec
	ctr := spec.Containers[0]
	env := map[string]string{}
	for _, from := range ctr.EnvFrom {
		cm, err := kube.CoreV1().ConfigMaps(chartNS).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = chartNS
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			env[e.Name] = fmt.Sprint(ctr.Resources.Limits.Memory().Value())
		default:
			t.Fatalf("env %s: the suite does not resolve %+v", e.Name, e.ValueFrom)
		}
	}

	mounts := map[string]string{} // mount path: local directory
	for _, m := range ctr.VolumeMounts {
		local := filepath.Join(dir, "volumes", m.Name)
		if err := os.MkdirAll(local, 0o700); err != nil {
			t.Fatal(err)
		}
		mounts[m.MountPath] = local
		for _, v := range spec.Volumes {
			if v.Name == m.Name {
				writeVolume(t, v, local)
			}
		}
	}
	paths := make([]string, 0, len(mounts))
	for p := range mounts {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for k, v := range env {
		for _, p := range paths {
			if v == p || strings.HasPrefix(v, p+"/") {
				env[k] = mounts[p] + strings.TrimPrefix(v, p)
				break
			}
		}
	}

	if env["SCALER_IN_CLUSTER"] != "true" {
		t.Fatalf("the chart's pod does not run in-cluster: %v", env)
	}
	delete(env, "SCALER_IN_CLUSTER")
	env["SCALER_KUBECONFIG"] = saKubeconfig(t, dir, spec.ServiceAccountName)

	vars := make([]string, 0, len(env))
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	p, err := c.start(fullname+"-0", scalerBin, vars)
	if err != nil {
		t.Fatal(err)
	}
	return p, probeURL(t, ctr)
}

// probeURL is where the kubelet would send the container's readiness
// probe, on loopback.
func probeURL(t *testing.T, ctr corev1.Container) string {
	t.Helper()
	probe := ctr.ReadinessProbe
	if probe == nil || probe.HTTPGet == nil {
		t.Fatalf("want an HTTP readiness probe with TLS on (the kubelet's gRPC probe cannot speak TLS), got %+v", probe)
	}
	port := probe.HTTPGet.Port.IntValue()
	for _, p := range ctr.Ports {
		if p.Name == probe.HTTPGet.Port.String() {
			port = int(p.ContainerPort)
		}
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, probe.HTTPGet.Path)
}

// writeVolume writes a Secret or projected Secret volume's files into dir;
// a volume claim is an empty directory.
func writeVolume(t *testing.T, v corev1.Volume, dir string) {
	t.Helper()
	var sources []corev1.SecretProjection
	switch {
	case v.Secret != nil:
		sources = append(sources, corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Items: v.Secret.Items})
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			if s.Secret == nil {
				t.Fatalf("volume %s: the suite mounts only Secrets", v.Name)
			}
			sources = append(sources, *s.Secret)
		}
	default:
		t.Fatalf("volume %s: the suite mounts only Secrets", v.Name)
	}
	for _, src := range sources {
		data := secretData(t, src.Name)
		items := src.Items
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			b, ok := data[it.Key]
			if !ok {
				t.Fatalf("volume %s: Secret %s has no key %s", v.Name, src.Name, it.Key)
			}
			path := filepath.Join(dir, it.Path)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			certtest.WriteFile(t, path, b)
		}
	}
}

// waitProbe polls url (the chart's readiness probe) until it answers 200.
func waitProbe(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 60s: %v\n%s", url, err, tail(p.log, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
