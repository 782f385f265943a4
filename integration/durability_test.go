package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/orgscaler/orgscaler/internal/proctest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// process is the scaler binary running as its own process, with clients.
type process struct {
	*proctest.Process
	api  pb.AdminServiceClient
	act  pb.ActivityServiceClient
	conn *grpc.ClientConn
}

// startProcess runs the scaler binary with a 1h idle window and the given
// flush interval; a slow flush it logs shows in the test's log.
func startProcess(t *testing.T, dataDir string, flush time.Duration) *process {
	t.Helper()
	pp := proctest.Start(t, scalerBin, dataDir, func(line []byte) {
		if bytes.Contains(line, []byte("slow flush")) {
			t.Log(string(line))
		}
	}, "--idle-window", "1h", "--flush-interval", flush.String())
	p := &process{Process: pp}
	var err error
	if p.conn, err = grpc.NewClient(pp.API, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.conn.Close() })
	p.api, p.act = pb.NewAdminServiceClient(p.conn), pb.NewActivityServiceClient(p.conn)
	return p
}

// adminChange is one UpdateOrg and what it sets.
type adminChange struct {
	scaleToZero bool
	window      time.Duration
}

// SIGKILL at a random moment under a load of activity and admin changes
// loses nothing acknowledged: every acknowledged admin change is on disk;
// every org's last activity on disk is at least that of its last batch
// acknowledged one flush interval (plus the time a flush takes) before the
// kill; and no org active before is dormant after.
func TestKillNineUnderLoad(t *testing.T) {
	const flush = 200 * time.Millisecond
	const flushTakes = 300 * time.Millisecond // slack for the write of one flush under -race
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			dir := t.TempDir()
			p := startProcess(t, dir, flush)
			ctx, cancel := context.WithCancel(context.Background())

			var mu sync.Mutex
			type batch struct {
				start, acked time.Time
				orgs         []string
			}
			var batches []batch // acknowledged
			var events atomic.Int64
			var wg sync.WaitGroup
			for g := range 4 {
				grng := rand.New(rand.NewPCG(seed, uint64(g)))
				wg.Go(func() {
					for ctx.Err() == nil {
						start := time.Now()
						s, err := p.act.StreamActivity(ctx)
						if err != nil {
							return
						}
						orgs := make([]string, 1000)
						for i := range orgs {
							orgs[i] = fmt.Sprintf("org-%d", grng.IntN(5000))
							if s.Send(&pb.StreamActivityRequest{Org: orgs[i]}) != nil {
								return
							}
						}
						if _, err := s.CloseAndRecv(); err != nil {
							return
						}
						events.Add(int64(len(orgs)))
						mu.Lock()
						batches = append(batches, batch{start: start, acked: time.Now(), orgs: orgs})
						mu.Unlock()
					}
				})
			}
			changes := map[string]adminChange{}  // acknowledged
			inFlight := map[string]adminChange{} // sent, not acknowledged
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					org := fmt.Sprintf("adm-%d", i%50)
					c := adminChange{scaleToZero: i%2 == 0, window: time.Hour + time.Duration(i)*time.Second}
					mu.Lock()
					inFlight[org] = c
					mu.Unlock()
					if _, err := p.api.UpdateOrg(ctx, &pb.UpdateOrgRequest{Org: org, ScaleToZeroAllowed: &c.scaleToZero, IdleWindow: durationOf(c.window)}); err != nil {
						return
					}
					mu.Lock()
					changes[org] = c
					delete(inFlight, org)
					mu.Unlock()
				}
			})

			// Load for longer than a flush and its write first, so every seed
			// has acknowledged activity a flush must have written; then the
			// random moment is the point.
			loaded := time.Now()
			pollFor(t, 30*time.Second, "activity acknowledged under load", func() bool { return events.Load() >= 20_000 })
			time.Sleep(max(0, flush+flushTakes-time.Since(loaded)) + time.Duration(rng.IntN(1200))*time.Millisecond)
			killAt := time.Now()
			_ = p.Cmd.Process.Signal(syscall.SIGKILL)
			<-p.Done
			cancel()
			wg.Wait()
			t.Logf("killed after %d acknowledged events and %d admin changes", events.Load(), len(changes))

			q := startProcess(t, dir, flush)
			got := map[string]*pb.Org{}
			for token := ""; ; {
				r, err := q.api.ListOrgs(context.Background(), &pb.ListOrgsRequest{PageSize: 1000, PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range r.GetOrgs() {
					got[o.GetId()] = o
				}
				if token = r.GetNextPageToken(); token == "" {
					break
				}
			}
			// Activity acknowledged before the floor was received before it,
			// so a flush has written it.
			floor := killAt.Add(-flush - flushTakes)
			want := map[string]time.Time{}
			for _, b := range batches {
				for _, org := range b.orgs {
					if !b.acked.After(floor) && b.start.After(want[org]) {
						want[org] = b.start
					}
				}
			}
			if len(want) == 0 {
				t.Fatalf("no activity acknowledged before %v (killed %v): nothing checked", floor, killAt)
			}
			t.Logf("checked %d orgs acknowledged before the last flush, and %d admin changes", len(want), len(changes))
			for org, at := range want {
				o, ok := got[org]
				if !ok {
					t.Fatalf("org %s, acknowledged before %v, is gone", org, floor)
				}
				if last := o.GetLastActivity().AsTime(); last.Before(at) {
					t.Errorf("org %s: last activity on disk %v, older than its batch sent at %v and acknowledged before %v (killed %v)", org, last, at, floor, killAt)
				}
			}
			for org, c := range changes {
				o := got[org]
				matches := func(c adminChange) bool {
					return o != nil && o.GetScaleToZeroAllowed() == c.scaleToZero && o.GetIdleWindow().AsDuration() == c.window
				}
				if f, ok := inFlight[org]; !matches(c) && !(ok && matches(f)) {
					t.Errorf("org %s: acknowledged change %+v lost; on disk %v", org, c, o)
				}
			}
			dormant, err := q.api.ListOrgs(context.Background(), &pb.ListOrgsRequest{Filter: pb.ListOrgsRequest_FILTER_DORMANT})
			if err != nil || len(dormant.GetOrgs()) != 0 {
				t.Fatalf("no org was dormant before the kill; after it: %v %v", dormant.GetOrgs(), err)
			}
		})
	}
}
