package pubsubdepth

import (
	"context"
	"net"
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
)

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

// startEmulator runs Google's Pub/Sub emulator on a free loopback port and
// sets PUBSUB_EMULATOR_HOST to it for the test.
func startEmulator(t *testing.T) string {
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
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator not up within 90s: %v\n%s", err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The subscription check against Google's emulator, reached through
// PUBSUB_EMULATOR_HOST as the Pub/Sub client does.
func TestCheckerAgainstEmulator(t *testing.T) {
	startEmulator(t)
	ctx := context.Background()
	c, err := pubsub.NewClient(ctx, "p-emulator")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topic, sub := "projects/p-emulator/topics/jobs", "projects/p-emulator/subscriptions/jobs"
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic}); err != nil {
		t.Fatal(err)
	}
	checker := NewPubSubChecker()
	defer checker.Close()
	if ok, err := checker.Exists(ctx, sub); err != nil || !ok {
		t.Fatalf("%s: want exists, got %v %v", sub, ok, err)
	}
	if ok, err := checker.Exists(ctx, "projects/p-emulator/subscriptions/nope"); err != nil || ok {
		t.Fatalf("want not found, got %v %v", ok, err)
	}
	if ok, err := checker.Exists(ctx, "projects/other-project/subscriptions/jobs"); err != nil || ok {
		t.Fatalf("another project: want not found, got %v %v", ok, err)
	}
}
