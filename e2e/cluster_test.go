//go:build e2e

// Package e2e runs the shipped ScaledObjects against a real control plane:
// etcd, kube-apiserver and KEDA's own operator, all on 127.0.0.1, built by
// e2e/tools/build.sh into a cache outside the repo. No kubelet: KEDA scales
// Deployments through the scale subresource, and the suite watches
// spec.replicas. Run it with `make e2e`.
package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// cluster is a control plane with KEDA, started for the whole suite.
type cluster struct {
	dir        string // scratch: data, certs, logs
	bin        string // the cached binaries
	crds       string
	kubeconfig string
	token      string
	apiserver  string // https://127.0.0.1:PORT
	procs      []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
}

// freePort returns a port free now, below Linux's ephemeral range
// (32768-60999): a port the kernel hands out (":0") can be taken by any
// process's next outgoing connection before the process meant to listen on
// it starts, as the suite's many clients do.
func freePort() int {
	for range 1000 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	panic("no free port between 20000 and 32000")
}

// start runs a binary in its own process group, its output to a log file.
func (c *cluster) start(name, path string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Its own group, killed by PID when the suite ends; and killed by the
	// kernel if the test binary dies first (a timeout skips every defer).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath}
	c.procs = append(c.procs, p)
	go func() { _ = cmd.Wait(); f.Close() }()
	return p, nil
}

// stop kills p's process group by PID and waits for it.
func (p *proc) stop(sig syscall.Signal) {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	deadline := time.Now().Add(15 * time.Second)
	for p.cmd.ProcessState == nil && time.Now().Before(deadline) {
		if err := syscall.Kill(p.cmd.Process.Pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

func (c *cluster) stopAll() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(syscall.SIGTERM)
	}
}

// tail returns the end of a process's log, for failure messages.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func startCluster(dir, cache string) (*cluster, error) {
	c := &cluster{dir: dir, bin: filepath.Join(cache, "bin"), crds: filepath.Join(cache, "keda-crds"), token: "e2e-admin-token"}
	if err := c.startEtcdAndAPIServer(); err != nil {
		return c, err
	}
	if err := c.kubectl(nil, "apply", "--server-side", "-f", c.crds); err != nil {
		return c, fmt.Errorf("apply KEDA's CRDs: %w", err)
	}
	if err := c.kubectl(nil, "create", "namespace", "keda"); err != nil {
		return c, err
	}
	return c, c.startKEDA()
}

func (c *cluster) startEtcdAndAPIServer() error {
	etcdPort, peerPort := freePort(), freePort()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if _, err := c.start("etcd", filepath.Join(c.bin, "etcd"), nil,
		"--data-dir", filepath.Join(c.dir, "etcd"), "--unsafe-no-fsync",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peerPort),
		"--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort())); err != nil {
		return err
	}
	saKey, saPub := filepath.Join(c.dir, "sa.key"), filepath.Join(c.dir, "sa.pub")
	if err := writeRSAKeyPair(saKey, saPub); err != nil {
		return err
	}
	tokens := filepath.Join(c.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	port := freePort()
	c.apiserver = fmt.Sprintf("https://127.0.0.1:%d", port)
	api, err := c.start("kube-apiserver", filepath.Join(c.bin, "kube-apiserver"), nil,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--etcd-servers="+etcdURL, "--cert-dir="+filepath.Join(c.dir, "apiserver-certs"),
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc", "--token-auth-file="+tokens,
		"--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none", "--service-cluster-ip-range=10.96.0.0/16")
	if err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequest("GET", c.apiserver+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready within 2m: %v\n%s", err, tail(api.log, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) writeKubeconfig() error {
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	return os.WriteFile(c.kubeconfig, kubeconfigFor(c.apiserver, c.token), 0o600)
}

// kubeconfigFor is a kubeconfig reaching server with a bearer token.
func kubeconfigFor(server, token string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %s, insecure-skip-tls-verify: true}}]
users: [{name: e2e, user: {token: %s}}]
contexts: [{name: e2e, context: {cluster: e2e, user: e2e}}]
current-context: e2e
`, server, token))
}

func (c *cluster) startKEDA() error {
	certs := filepath.Join(c.dir, "keda-certs")
	if err := writeServingCert(certs); err != nil {
		return err
	}
	p, err := c.start("keda-operator", filepath.Join(c.bin, "keda-operator"),
		[]string{"KUBECONFIG=" + c.kubeconfig, "WATCH_NAMESPACE=", "POD_NAMESPACE=keda", "KEDA_CLUSTER_OBJECT_NAMESPACE=keda"},
		"--enable-cert-rotation=false", "--leader-elect=false", "--cert-dir="+certs,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", freePort()),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", freePort()),
		fmt.Sprintf("--metrics-service-bind-address=127.0.0.1:%d", freePort()),
		"--zap-log-level=info")
	if err != nil {
		return err
	}
	// KEDA is ready once its controllers run; its log says so.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(p.log)
		if bytes.Contains(b, []byte("Starting workers")) {
			return nil
		}
		if p.cmd.ProcessState != nil || time.Now().After(deadline) {
			return fmt.Errorf("KEDA's operator did not start:\n%s", tail(p.log, 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubectl runs kubectl against the cluster, with stdin if given.
func (c *cluster) kubectl(stdin []byte, args ...string) error {
	_, err := c.kubectlOut(stdin, args...)
	return err
}

func (c *cluster) kubectlOut(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func writeRSAKeyPair(keyPath, pubPath string) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

// writeServingCert makes the tls.crt, tls.key and ca.crt KEDA's operator
// wants in its --cert-dir (self-signed: nothing calls it here).
func writeServingCert(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keda-e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, b := range map[string][]byte{
		"tls.crt": crt, "ca.crt": crt, "tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
