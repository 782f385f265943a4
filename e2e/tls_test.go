//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/internal/certtest"
)

// KEDA's own operator dials a scaler that requires client certificates,
// with the shipped ClusterTriggerAuthentication and Secrets in
// cert-manager's layout (a server CA, and a separate CA for KEDA's client
// certificate), and wakes a pynode through the push stream over mTLS.
func TestKEDAOverMTLS(t *testing.T) {
	dir := filepath.Join(c.dir, "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	serverCA, clientCA := certtest.NewCA(t, "orgscaler-server-ca"), certtest.NewCA(t, "orgscaler-keda-client-ca")
	cert, key := serverCA.Issue(t, certtest.Spec{CommonName: "orgscaler"}).Write(t, dir, "server")
	serverCAFile, clientCAFile := filepath.Join(dir, "server-ca.crt"), filepath.Join(dir, "keda-client-ca.crt")
	certtest.WriteFile(t, serverCAFile, serverCA.PEM)
	certtest.WriteFile(t, clientCAFile, clientCA.PEM)
	clientCert, clientKey := clientCA.Issue(t, certtest.Spec{CommonName: "keda-operator", Client: true}).Write(t, dir, "keda")

	s := newScaler("scaler-tls", "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", clientCAFile)
	startScaler(t, s)
	t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })

	_ = c.kubectl(nil, "create", "namespace", "ml") // may exist from the other test
	if err := c.kubectl([]byte(strings.ReplaceAll(deployments, "NAME", "pynode-secure")), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	// The Secrets as keda-client-secret.example.yaml says to make them
	// without cert-manager, in KEDA's namespace.
	_ = c.kubectl(nil, "create", "namespace", "keda")
	for _, args := range [][]string{
		{"orgscaler-tls", "--from-file=tls.crt=" + cert, "--from-file=tls.key=" + key, "--from-file=ca.crt=" + serverCAFile},
		{"keda-orgscaler-client", "--from-file=tls.crt=" + clientCert, "--from-file=tls.key=" + clientKey, "--from-file=ca.crt=" + clientCAFile},
	} {
		if err := c.kubectl(nil, append([]string{"create", "secret", "generic", "-n", "keda"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.kubectl(nil, "apply", "-f", filepath.Join("..", "deploy", "tls", "triggerauthentication.yaml")); err != nil {
		t.Fatal(err)
	}
	s.ctl(t, "activity", "secure")
	s.ctl(t, "org", "set", "secure", "--idle-window", "1s")
	so := `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: pynode-secure, namespace: ml}
spec:
  scaleTargetRef: {name: pynode-secure}
  minReplicaCount: 0
  maxReplicaCount: 1
  pollingInterval: 1
  cooldownPeriod: 3
  triggers:
    - type: external-push
      authenticationRef: {name: orgscaler-mtls, kind: ClusterTriggerAuthentication}
      metadata:
        scalerAddress: "ADDR"
        enableTLS: "true"
        workload: pynode
        org: secure
`
	if err := c.kubectl([]byte(strings.ReplaceAll(so, "ADDR", s.keda)), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, "pynode-secure", is(0), "0 once the org sleeps", 60*time.Second)
	start := time.Now()
	s.ctl(t, "activity", "secure")
	at := waitReplicas(t, "pynode-secure", is(1), "woken over mTLS", 30*time.Second)
	t.Logf("WAKE over mTLS: %s", at.Sub(start).Round(time.Millisecond))
}

// The shipped kustomizations render, and the API server accepts what they
// render (the cert-manager resources need cert-manager's CRDs, not here).
func TestDeployKustomizationsApply(t *testing.T) {
	_ = c.kubectl(nil, "create", "namespace", "keda")
	for _, k := range []string{"scaler", "tls"} {
		out, err := c.kubectlOut(nil, "kustomize", filepath.Join("..", "deploy", k))
		if err != nil {
			t.Fatalf("kustomize deploy/%s: %v", k, err)
		}
		if err := c.kubectl([]byte(out), "apply", "--dry-run=server", "-f", "-"); err != nil {
			t.Fatalf("deploy/%s: %v", k, err)
		}
	}
}
