package integration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// A flood of activity on the API port, unary and streamed, from many
// connections, does not stop KEDA's port from answering: the two ports
// are separate servers.
func TestKEDAPortAnswersDuringAPIFlood(t *testing.T) {
	d := start(t, options(t, t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i := range 16 {
		act := pb.NewActivityServiceClient(d.dial(t, d.app.APIAddr()))
		wg.Go(func() {
			if i%2 == 0 {
				for n := 0; ctx.Err() == nil; n++ {
					if _, err := act.RecordActivity(ctx, &pb.RecordActivityRequest{Org: fmt.Sprintf("flood-%d-%d", i, n)}); err == nil {
						sent.Add(1)
					}
				}
				return
			}
			s, err := act.StreamActivity(ctx)
			if err != nil {
				return
			}
			for n := 0; ctx.Err() == nil; n++ {
				if s.Send(&pb.StreamActivityRequest{Org: fmt.Sprintf("flood-%d-%d", i, n%5000)}) != nil {
					return
				}
				sent.Add(1)
			}
		})
	}
	poll(t, "the flood under way", func() bool { return sent.Load() > 10000 })
	for n := range 200 {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := d.keda.IsActive(cctx, pynode(fmt.Sprintf("org-%d", n%20)))
		ccancel()
		if err != nil {
			t.Fatalf("IsActive %d during the flood: %v", n, err)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d activity events sent while KEDA's port answered 200 calls", sent.Load())
}
