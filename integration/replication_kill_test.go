package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orgscaler/orgscaler/internal/proctest"
	"github.com/orgscaler/orgscaler/internal/pubsubtest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// replicaProcess is one replica as its own scaler process.
type replicaProcess struct {
	*proctest.Process
	id, dir string
	api     pb.AdminServiceClient
	act     pb.ActivityServiceClient
}

func startReplicaProcess(t *testing.T, id, dir, topic string, peers []*replicaProcess) *replicaProcess {
	t.Helper()
	args := []string{"--replication=pubsub", "--replication-topic", topic, "--replica-id", id, "--idle-window", "1h", "--anti-entropy-interval", "1h"}
	if len(peers) == 0 {
		args = append(args, "--peers", noPeer)
	} else {
		var list string
		for i, p := range peers {
			if i > 0 {
				list += ","
			}
			list += p.API
		}
		args = append(args, "--peers", list)
	}
	pp := proctest.Start(t, scalerBin, dir, func(line []byte) {
		if strings.Contains(string(line), `"level":"WARN"`) || strings.Contains(string(line), `"level":"ERROR"`) || strings.Contains(string(line), "digests differed") {
			t.Logf("%s: %s", id, line)
		}
	}, args...)
	conn, err := grpc.NewClient(pp.API, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &replicaProcess{Process: pp, id: id, dir: dir, api: pb.NewAdminServiceClient(conn), act: pb.NewActivityServiceClient(conn)}
}

func (p *replicaProcess) digest(t *testing.T) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := p.api.Digest(ctx, &pb.DigestRequest{})
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%s/%d", r.GetDigest(), r.GetOrgs())
}

// SIGKILL of one of three replica processes under a steady load of
// activity: nothing any replica acknowledged is missing on the survivors,
// and the killed one, restarted on its data dir, catches up to the same
// digest.
func TestKillOneReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("three scaler processes and the Pub/Sub emulator")
	}
	addr := pubsubtest.StartEmulator(t)
	topic := "projects/p-kill/topics/orgs"
	if _, err := pubsubtest.Client(t, addr, "p-kill").TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	var fleet []*replicaProcess
	for i := range 3 {
		fleet = append(fleet, startReplicaProcess(t, fmt.Sprintf("scaler-%d", i), t.TempDir(), topic, fleet))
	}

	// About 1k events a second over 300 orgs, to whichever replicas are up;
	// each acknowledged one is remembered with the instant it recorded.
	var mu sync.Mutex
	acked := map[string]time.Time{}
	var acks atomic.Int64
	alive := []*replicaProcess{fleet[0], fleet[1], fleet[2]}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			tick := time.NewTicker(4 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				mu.Lock()
				p := alive[r.IntN(len(alive))]
				mu.Unlock()
				org := fmt.Sprintf("org-%03d", r.IntN(300))
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				resp, err := p.act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: org})
				cancel()
				if err != nil {
					continue // not acknowledged: nothing promised
				}
				at := resp.GetOrg().GetLastActivity().AsTime()
				acks.Add(1)
				mu.Lock()
				if at.After(acked[org]) {
					acked[org] = at
				}
				mu.Unlock()
			}
		})
	}
	poll(t, "500 events acknowledged before the kill", func() bool { return acks.Load() >= 500 })
	mu.Lock()
	alive = fleet[:2]
	mu.Unlock()
	victim := fleet[2]
	if err := victim.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.Done
	before := acks.Load()
	poll(t, "500 more acknowledged by the survivors alone", func() bool { return acks.Load() >= before+500 })
	back := startReplicaProcess(t, victim.id, victim.dir, topic, fleet[:2])
	close(stop)
	wg.Wait()

	survivors := fleet[:2]
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d orgs had acknowledged activity", len(acked))
	poll(t, "every acknowledged activity on both survivors", func() bool {
		for _, p := range survivors {
			for org, at := range acked {
				o, err := p.api.GetOrg(context.Background(), &pb.GetOrgRequest{Org: org})
				if err != nil || o.GetOrg().GetLastActivity().AsTime().Before(at) {
					return false
				}
			}
		}
		return true
	})
	began := time.Now()
	all := []*replicaProcess{fleet[0], fleet[1], back}
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := []string{all[0].digest(t), all[1].digest(t), all[2].digest(t)}
		if agree(d) {
			t.Logf("the restarted replica has the survivors' digest %s after catching up", time.Since(began).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			for org := range acked {
				a, _ := all[0].api.GetOrg(context.Background(), &pb.GetOrgRequest{Org: org})
				b, _ := all[2].api.GetOrg(context.Background(), &pb.GetOrgRequest{Org: org})
				if !a.GetOrg().GetLastActivity().AsTime().Equal(b.GetOrg().GetLastActivity().AsTime()) {
					t.Logf("%s: survivor %v, restarted %v", org, a.GetOrg().GetLastActivity().AsTime(), b.GetOrg().GetLastActivity().AsTime())
				}
			}
			t.Fatalf("digests still differ 10s after the restart: %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
