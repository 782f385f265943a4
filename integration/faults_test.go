package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/dgraph-io/badger/v4"
	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/orgscaler/orgscaler/app"
	"github.com/orgscaler/orgscaler/internal/proctest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/storage"
)

// With replication's Pub/Sub wedged (the emulator stopped with SIGSTOP),
// activity is still recorded and in force on the replica it reaches: a
// producer's stream that ends with no deadline hears Unavailable within
// --replication-wait instead of hanging (and holds no ingest capacity
// while it waits), a new org sent meanwhile is recorded, and an org used
// every second never goes dormant although its 3 s window passes
// twice over. When Pub/Sub comes back, the other replica learns it all.
func TestPubSubPausedActivityStaysLocal(t *testing.T) {
	em := pubsubtest.Start(t)
	fleet := startFleetOn(t, em, 2, func(o *app.Options) { o.ReplicationWait = time.Second })
	a, b := fleet[0], fleet[1]
	ctx := context.Background()
	if _, err := a.orgs.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: "acme", IdleWindow: durationOf(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "acme's window on B", func() bool {
		o, err := b.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"})
		return err == nil && o.GetOrg().GetIdleWindow().AsDuration() == 3*time.Second
	})

	em.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			em.Resume(t)
		}
	}()
	// A producer with no deadline (as curl or grpcurl are) ends its stream.
	stream, err := a.act.StreamActivity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stream.Send(&pb.StreamActivityRequest{Org: "acme"}); err != nil {
			t.Fatal(err)
		}
	}
	streamErr := make(chan error, 1)
	go func() { _, err := stream.CloseAndRecv(); streamErr <- err }()

	start := time.Now()
	for i := 0; time.Since(start) < 7*time.Second; i++ {
		org := "acme"
		if i == 1 {
			org = "beta"
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := a.act.RecordActivity(cctx, &pb.RecordActivityRequest{Org: org})
		cancel()
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "accepted here but not yet replicated") {
			t.Fatalf("activity for %s while Pub/Sub is paused: %v; want Unavailable, accepted here but not yet replicated", org, err)
		}
		if o, err := a.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "acme"}); err != nil || o.GetOrg().GetState() == pb.Org_STATE_DORMANT {
			t.Fatalf("acme, in use, after %s of the outage: %v %v", time.Since(start).Round(time.Millisecond), o.GetOrg().GetState(), err)
		}
		if active, _ := answer(t, a, pynode("acme")); !active {
			t.Fatalf("KEDA told acme's pynode is inactive after %s of the outage", time.Since(start).Round(time.Millisecond))
		}
	}
	select {
	case err := <-streamErr:
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "3 events recorded here") {
			t.Fatalf("the stream ended with %v; want Unavailable naming the 3 events recorded here", err)
		}
	default:
		t.Fatal("a stream ended with no deadline is still waiting for Pub/Sub")
	}
	if _, err := a.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "beta"}); err != nil {
		t.Fatalf("beta, sent during the outage, on the replica it reached: %v", err)
	}

	em.Resume(t)
	resumed = true
	pollFor(t, 30*time.Second, "B learns of beta once Pub/Sub is back", func() bool {
		_, err := b.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "beta"})
		return err == nil
	})
	if _, err := a.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "acme"}); err != nil {
		t.Fatalf("activity once Pub/Sub is back: %v", err)
	}
}

// With the replication topic gone (deleted, or publishing refused) a
// scaler fed through --activity-subscription records every message at
// once, nacks what it cannot replicate within --replication-wait, and on
// SIGTERM exits within its drain, saying in one line what was not
// replicated instead of one line per message.
func TestFeedWithoutReplicationTopicStops(t *testing.T) {
	em, c := replicationTopic(t)
	ctx := context.Background()
	feedSub := "projects/p-repl/subscriptions/activity"
	pubsubtest.Create(t, c, feedSub)

	var mu sync.Mutex
	var warnings, errs int
	var logs bytes.Buffer
	p := proctest.Start(t, scalerBin, filepath.Join(t.TempDir(), "data"), func(line []byte) {
		var l struct{ Level string }
		_ = json.Unmarshal(line, &l)
		mu.Lock()
		defer mu.Unlock()
		switch l.Level {
		case "WARN":
			warnings++
		case "ERROR":
			errs++
		}
		if l.Level != "INFO" && logs.Len() < 1<<16 {
			logs.Write(line)
			logs.WriteByte('\n')
		}
	}, "--replication", "pubsub", "--replication-topic", replTopic, "--replica-id", "feed-0", "--peers", noPeer,
		"--activity-subscription", feedSub, "--replication-wait", "1s")
	em.Delete(t, replTopic)

	const n = 2000
	pub := c.Publisher(pubsubtest.Topic(feedSub))
	var results []*pubsub.PublishResult
	for i := range n {
		results = append(results, pub.Publish(ctx, &pubsub.Message{Attributes: map[string]string{"org": fmt.Sprintf("fed-%04d", i)}}))
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub.Stop()
	conn, err := grpc.NewClient(p.API, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin := pb.NewAdminServiceClient(conn)
	pollFor(t, 60*time.Second, "every fed org recorded although none can be replicated", func() bool {
		r, err := admin.Digest(ctx, &pb.DigestRequest{})
		return err == nil && r.GetOrgs() == n
	})

	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the scaler did not exit within 60s of SIGTERM; its warnings and errors:\n%s", logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if warnings+errs > 20 {
		t.Fatalf("%d warnings and %d errors logged for one outage (want a handful, each saying how many):\n%.4000s", warnings, errs, logs.String())
	}
	t.Logf("warnings and errors:\n%s", logs.String())
	if !strings.Contains(logs.String(), "not replicated") && !strings.Contains(logs.String(), "not published") {
		t.Fatalf("the log does not say what was not replicated:\n%s", logs.String())
	}
}

// replicationTopic starts an emulator with the replication topic, and a
// client of it.
func replicationTopic(t *testing.T) (*pubsubtest.Emulator, *pubsub.Client) {
	t.Helper()
	em := pubsubtest.Start(t)
	return em, createReplTopic(t, em.Addr)
}

// pollFor is poll with a deadline of its own.
func pollFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGTERM to the real binary drains: a producer's open stream ends with
// its counts once they are replicated, the history minutes marked since
// the last flush reach the other replica, and the process exits 0.
func TestSIGTERMDrainsToPeers(t *testing.T) {
	replicationTopic(t)
	ctx := context.Background()
	start := func(id string) (*proctest.Process, pb.ActivityServiceClient, pb.AdminServiceClient) {
		p := proctest.Start(t, scalerBin, filepath.Join(t.TempDir(), "data"), nil,
			"--replication", "pubsub", "--replication-topic", replTopic, "--replica-id", id, "--peers", noPeer, "--flush-interval", "1h")
		conn, err := grpc.NewClient(p.API, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return p, pb.NewActivityServiceClient(conn), pb.NewAdminServiceClient(conn)
	}
	_, _, adminB := start("drain-b")
	a, actA, adminA := start("drain-a")

	stream, err := actA.StreamActivity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		if err := stream.Send(&pb.StreamActivityRequest{Org: fmt.Sprintf("drain-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	pollFor(t, 10*time.Second, "A records the stream's events", func() bool {
		_, err := adminA.GetOrg(ctx, &pb.GetOrgRequest{Org: fmt.Sprintf("drain-%d", n-1)})
		return err == nil
	})
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.GetEvents() != n {
		t.Fatalf("the stream open at SIGTERM ended with %v, %v; want its %d events counted", resp, err, n)
	}
	select {
	case <-a.Done:
	case <-time.After(30 * time.Second):
		t.Fatal("A did not exit within 30s of SIGTERM")
	}
	if code := a.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("A exited %d after SIGTERM; want 0", code)
	}
	pollFor(t, 10*time.Second, "B has every org A acknowledged before it stopped", func() bool {
		r, err := adminB.Digest(ctx, &pb.DigestRequest{})
		return err == nil && r.GetOrgs() == n
	})
	// (A message of days may reach B before the orgs': B applies it again
	// when Pub/Sub redelivers it, 10 s later by the subscription's retry
	// policy.)
	pollFor(t, 30*time.Second, "B has the minutes A marked since its last flush", func() bool {
		h, err := adminB.History(ctx, &pb.HistoryRequest{Day: timestamppb.Now()})
		if err != nil {
			return false
		}
		seen := 0
		for {
			r, err := h.Recv()
			if err != nil {
				return seen == n
			}
			for _, d := range r.GetDays() {
				if strings.HasPrefix(d.GetOrg(), "drain-") {
					seen++
				}
			}
		}
	})
}

// The real binary under ulimit -n 512, with 1,000 connections opened to
// its API port and left silent: KEDA's port still answers, the API still
// serves once strangers' connections are cut, and a keep-alive connection
// left idle is closed after --api-idle-timeout.
func TestAPIFloodSparesKEDA(t *testing.T) {
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "scaler-512")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nulimit -n 512 || exit 99\nexec "+scalerBin+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := proctest.Start(t, wrapper, filepath.Join(dir, "data"), nil, "--api-idle-timeout", "1s")

	// An HTTP/1.1 keep-alive connection, used once and then left idle.
	idle, err := net.Dial("tcp", p.API)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := fmt.Fprintf(idle, "POST /orgscaler.v1.AdminService/Digest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, idle) // returns when the server closes it
		closed <- err
	}()

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			_ = c.Close()
		}
	}()
	for range 1000 {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", p.API)
		if err != nil {
			break // the accept queue is full: that is the kernel's to refuse
		}
		flood = append(flood, c)
	}
	t.Logf("%d connections opened to the API port", len(flood))

	conn, err := grpc.NewClient(p.KEDA, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keda := kedapb.NewExternalScalerClient(conn)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := keda.IsActive(cctx, pynode("flooded")); err != nil {
		t.Fatalf("KEDA's port with the API flooded: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("an idle keep-alive connection to the API was not closed within 30s of --api-idle-timeout 1s")
	}
	for _, c := range flood {
		_ = c.Close()
	}
	flood = nil
	api, err := grpc.NewClient(p.API, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	actx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := pb.NewActivityServiceClient(api).RecordActivity(actx, &pb.RecordActivityRequest{Org: "after-flood"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("the API once the flood is gone: %v", err)
	}
}

// Names from outside cannot grow what the scaler tracks: past
// --max-subscriptions a hint or a trigger naming a new subscription gets
// ResourceExhausted naming the flag, and the tracked one still answers.
func TestSubscriptionCap(t *testing.T) {
	o := options(t, t.TempDir())
	o.PubSub, o.PubSubListen, o.MaxSubscriptions = app.PubSubEmbedded, "127.0.0.1:0", 1
	d := start(t, o)
	ctx := context.Background()
	first, second := "projects/p-cap/subscriptions/first", "projects/p-cap/subscriptions/second"
	if _, err := d.act.Hint(ctx, &pb.HintRequest{Subscription: first, Messages: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := d.act.Hint(ctx, &pb.HintRequest{Subscription: second, Messages: 1})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-subscriptions") || !strings.Contains(err.Error(), second) {
		t.Fatalf("a hint past the cap: %v; want ResourceExhausted naming %s and --max-subscriptions", err, second)
	}
	_, err = d.keda.IsActive(ctx, worker(second, 1))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-subscriptions") {
		t.Fatalf("KEDA asking about a trigger past the cap: %v; want ResourceExhausted naming --max-subscriptions", err)
	}
	if _, err := d.act.Hint(ctx, &pb.HintRequest{Subscription: first, Messages: 1}); err != nil {
		t.Fatalf("the tracked subscription past the cap: %v", err)
	}
}

// A replica whose subscription is deleted under it (by an operator, or
// expired while it was away) recreates it and loads a peer's snapshot
// before it serves again: it learns what was sent meanwhile within
// seconds, not at the next anti-entropy (5 minutes).
func TestLostSubscriptionHeals(t *testing.T) {
	em := pubsubtest.Start(t)
	fleet := startFleetOn(t, em, 2)
	a, b := fleet[0], fleet[1]
	ctx := context.Background()
	em.Delete(t, "projects/p-repl/subscriptions/orgs-scaler-1")
	if _, err := a.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "during-the-gap"}); err != nil {
		t.Fatal(err)
	}
	pollFor(t, 30*time.Second, "B learns of activity sent while its subscription was gone", func() bool {
		_, err := b.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "during-the-gap"})
		return err == nil
	})
	if _, err := a.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "after-the-gap"}); err != nil {
		t.Fatal(err)
	}
	pollFor(t, 10*time.Second, "B gets changes through its new subscription", func() bool {
		_, err := b.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "after-the-gap"})
		return err == nil
	})
}

// A second live process started with an existing replica's --replica-id
// is found from the messages they share (one of the first's published
// after one of its own, by Pub/Sub's clock, whatever the hosts' clocks)
// and stops with an error naming the id; the first keeps serving.
func TestTwinReplicaRefused(t *testing.T) {
	em := pubsubtest.Start(t)
	fleet := startFleetOn(t, em, 2)
	first, peer := fleet[0], fleet[1]
	o := options(t, t.TempDir())
	o.Replication, o.ReplicationTopic, o.ReplicaID, o.Peers = app.ReplicationPubSub, replTopic, "scaler-0", []string{peer.app.APIAddr()}
	twin, err := app.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- twin.Run(context.Background()) }()
	defer twin.Close()
	conn, err := grpc.NewClient(twin.APIAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	twinAct := pb.NewActivityServiceClient(conn)

	// Both publish (the twin must see one of its own messages come back
	// before it can tell the first's are newer than it).
	ctx := context.Background()
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; ; i++ {
		if _, err := first.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("seen-%d", i)}); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, _ = twinAct.RecordActivity(cctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("twin-%d", i)}) // gone once it refuses
		cancel()
		select {
		case err := <-ran:
			if err == nil || !strings.Contains(err.Error(), "--replica-id scaler-0") {
				t.Fatalf("the twin stopped with %v; want an error naming --replica-id scaler-0", err)
			}
			t.Logf("the twin stopped after %d changes: %v", i+1, err)
			if _, err := first.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "after-the-twin"}); err != nil {
				t.Fatalf("the first process after its twin stopped: %v", err)
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a second process with --replica-id scaler-0 was still serving after 90s")
		}
	}
}

// A replica back from longer away than tombstones are kept (8 days) may
// hold orgs the others deleted and have since forgotten: it is not ready
// until a peer's snapshot replaces its state, and the deleted org stays
// deleted everywhere instead of coming back with it.
func TestAwayLongerThanTombstones(t *testing.T) {
	fleet := startFleet(t, 2)
	a, b := fleet[0], fleet[1]
	ctx := context.Background()
	for _, org := range []string{"doomed", "kept"} {
		if _, err := a.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: org}); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "B has both orgs", func() bool { r, err := b.orgs.Digest(ctx, &pb.DigestRequest{}); return err == nil && r.GetOrgs() == 2 })
	dirA, dirB := a.app.DataDir(), b.app.DataDir()
	b.stop(t)
	if _, err := a.orgs.DeleteOrg(ctx, &pb.DeleteOrgRequest{Org: "doomed"}); err != nil {
		t.Fatal(err)
	}
	a.stop(t)
	// Nine days on, as the data dirs would be: A's tombstone expired, and
	// B last ran nine days ago.
	editDB(t, dirA, func(txn *badger.Txn) error { return txn.Delete([]byte("tomb/doomed")) })
	editDB(t, dirB, func(txn *badger.Txn) error {
		return txn.Set([]byte("meta/alive"), binary.AppendVarint(nil, time.Now().Add(-9*24*time.Hour).UnixNano()))
	})
	a = startReplica(t, "scaler-0", dirA, nil)
	b = startReplica(t, "scaler-1", dirB, []*daemon{a})
	for _, d := range []*daemon{a, b} {
		if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "kept"}); err != nil {
			t.Fatalf("kept: %v", err)
		}
	}
	// B's restart republishes its state: the deleted org must not be in it.
	if _, err := b.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: "after"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "A has B's activity since", func() bool { _, err := a.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "after"}); return err == nil })
	for _, d := range []*daemon{a, b} {
		if _, err := d.orgs.GetOrg(ctx, &pb.GetOrgRequest{Org: "doomed"}); !isNotFound(err) {
			t.Fatalf("doomed, deleted while B was away, is back on %s: %v", d.app.Addr(), err)
		}
	}
}

// editDB changes a stopped scaler's data dir as time or an operator would.
func editDB(t *testing.T, dir string, f func(*badger.Txn) error) {
	t.Helper()
	db, err := storage.Open(storage.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Badger().Update(f); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
