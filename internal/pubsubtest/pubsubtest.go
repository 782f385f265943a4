// Package pubsubtest gives tests a Pub/Sub client on an emulator or the
// embedded Pub/Sub, and subscriptions to scale on.
package pubsubtest

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Client dials the Pub/Sub at addr in plaintext, closed when the test ends.
func Client(t testing.TB, addr, project string) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), project, option.WithEndpoint(addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Topic is the topic named like sub: projects/P/topics/S.
func Topic(sub string) string { return strings.Replace(sub, "/subscriptions/", "/topics/", 1) }

// Create makes sub (projects/P/subscriptions/S) and its topic, Topic(sub).
func Create(t testing.TB, c *pubsub.Client, sub string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: Topic(sub)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: Topic(sub)}); err != nil {
		t.Fatal(err)
	}
}

// emulatorPath finds Google's Pub/Sub emulator in the Cloud SDK.
func emulatorPath() (string, error) {
	root := "/usr/lib/google-cloud-sdk"
	if out, err := exec.Command("gcloud", "info", "--format=value(installation.sdk_root)").Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		root = strings.TrimSpace(string(out))
	}
	p := filepath.Join(root, "platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	if _, err := exec.LookPath("java"); err != nil {
		return "", err
	}
	return p, nil
}

// StartEmulator runs Google's Pub/Sub emulator on a free loopback port and
// sets PUBSUB_EMULATOR_HOST to it for the test.
func StartEmulator(t testing.TB) string {
	t.Helper()
	return Start(t).Addr
}

// Emulator is a running Pub/Sub emulator that a test can break.
type Emulator struct {
	Addr string
	pid  int
}

// Pause stops the emulator's processes (SIGSTOP): every call to it hangs
// until Resume, as a partitioned or wedged Pub/Sub does.
func (e *Emulator) Pause(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(-e.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume continues a paused emulator (SIGCONT).
func (e *Emulator) Resume(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(-e.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Delete removes a topic or subscription (projects/P/topics/T or
// projects/P/subscriptions/S) through the emulator's REST API, as an
// operator, an expiry or a revoked permission would take it away.
func (e *Emulator) Delete(t testing.TB, name string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, "http://"+e.Addr+"/v1/"+name, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delete %s: %s", name, resp.Status)
	}
}

// Start runs Google's Pub/Sub emulator on a free loopback port, sets
// PUBSUB_EMULATOR_HOST to it for the test, and returns it once it answers.
func Start(t testing.TB) *Emulator {
	t.Helper()
	path, err := emulatorPath()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("Google's Pub/Sub emulator (Cloud SDK) or java is not installed here: %v", err)
		}
		t.Fatalf("CI must have the Pub/Sub emulator and java: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, "--host=127.0.0.1", "--port="+port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	t.Setenv("PUBSUB_EMULATOR_HOST", addr)
	c, err := pubsub.NewClient(context.Background(), "p-emulator")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.TopicAdminClient.ListTopics(ctx, &pubsubpb.ListTopicsRequest{Project: "projects/p-emulator"}).Next()
		cancel()
		if err == nil || err == iterator.Done {
			return &Emulator{Addr: addr, pid: cmd.Process.Pid}
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator not up within 90s: %v\n%s", err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
