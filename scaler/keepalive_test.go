package scaler_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/decide"
	"github.com/orgscaler/orgscaler/idletimes"
	"github.com/orgscaler/orgscaler/scaler"
	"github.com/orgscaler/orgscaler/storage"
)

// A learned model of an org used every 30 minutes is let go after its
// minWarm, and pushed active again coldStart before the next expected
// use: at 27 minutes, on fake time. Explain says why. gRPC runs over an
// in-memory connection here: loopback sockets never let fake time move.
func TestLearnedPrewarmPushed(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		store, srv, conn, stop := learnedEnv(t, dir)
		model := map[string]string{"workload": "model", "org": "acme", "keepAlive": "learned", "coldStart": "3m"}
		for range 6 { // five idle times of 30 minutes
			store.Record("acme")
			time.Sleep(30 * time.Minute)
		}
		store.Record("acme")
		last := time.Now()
		stream, err := kedapb.NewExternalScalerClient(conn).StreamIsActive(context.Background(), ref(model))
		if err != nil {
			t.Fatal(err)
		}
		pushed := make(chan time.Time, 4)
		go func() {
			for {
				r, err := stream.Recv()
				if err != nil {
					close(pushed)
					return
				}
				if r.GetResult() {
					pushed <- time.Now()
				}
			}
		}()
		if at := <-pushed; !at.Equal(last) {
			t.Fatalf("first push at %s after the activity; want at once", at.Sub(last))
		}
		time.Sleep(10 * time.Minute)
		e, err := srv.Explain(model)
		if err != nil || e.Active || e.Answer.Rule != decide.RulePlanDown {
			t.Fatalf("10 m after activity: active %v rule %s err %v; want let go by the plan", e.Active, e.Answer.Rule, err)
		}
		if got := e.Answer.NextPrewarm().Sub(last); got != 27*time.Minute {
			t.Fatalf("next pre-warm %s after activity; want 27m, the 3m cold start before the 30m use", got)
		}
		if at := <-pushed; at.Sub(last) != 27*time.Minute {
			t.Fatalf("pre-warm pushed %s after activity; want 27m", at.Sub(last))
		}
		e, err = srv.Explain(model)
		if err != nil || !e.Active || e.Answer.Rule != decide.RulePrewarm || !strings.Contains(e.Answer.Reason(), "pre-warmed") {
			t.Fatalf("at the pre-warm: active %v rule %s reason %q err %v", e.Active, e.Answer.Rule, e.Answer.Reason(), err)
		}
		t.Logf("explain: %s", e.Answer.Reason())

		// What was learned survives a restart.
		stop()
		_, srv, _, stop = learnedEnv(t, dir)
		defer stop()
		if e, err := srv.Explain(model); err != nil || !e.Active || e.Answer.Rule != decide.RulePrewarm {
			t.Fatalf("after a restart, at the pre-warm: active %v rule %s err %v; want the same plan", e.Active, e.Answer.Rule, err)
		}
	})
}

// learnedEnv serves KEDA's service on a store and idle times in dir, over
// an in-memory connection; stop closes it all. Badger opens inside the
// bubble: its writes must not cross it.
func learnedEnv(t *testing.T, dir string) (*activity.Store, *scaler.Server, *grpc.ClientConn, func()) {
	db, err := storage.Open(storage.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	store, err := activity.Open(activity.Options{DB: db, IdleWindow: 24 * time.Hour, FlushInterval: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	idle, err := idletimes.Open(idletimes.Options{DB: db.Badger(), Replica: "r0", OnUpdate: store.Notify})
	if err != nil {
		t.Fatal(err)
	}
	store.Subscribe(activity.Subscriber{Activity: idle.Activity})
	done := make(chan struct{})
	srv := scaler.New(scaler.Options{Orgs: store, IdleTimes: idle, Done: done})
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	kedapb.RegisterExternalScalerServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	return store, srv, conn, func() {
		close(done)
		_ = conn.Close()
		gs.Stop()
		if err := errors.Join(store.Close(), db.Close()); err != nil {
			t.Error(err)
		}
	}
}
