package pubsubdepth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orgscaler/orgscaler/internal/pubsubtest"
)

// sourceFixture makes a subscription with a given backlog in one source.
type sourceFixture struct {
	source Source
	// backlog makes sub exist with n undelivered messages.
	backlog func(t *testing.T, sub string, n int)
}

func monitoringFixture(t *testing.T) sourceFixture {
	ms, mon := startMetricService(t)
	return sourceFixture{source: mon, backlog: func(t *testing.T, sub string, n int) {
		ms.Set(sub, int64(n), time.Now().Add(-30*time.Second))
	}}
}

func embeddedFixture(t *testing.T) sourceFixture {
	emb, err := StartEmbedded("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Close() })
	client := pubsubtest.Client(t, emb.Addr(), "p-contract")
	return sourceFixture{source: emb, backlog: func(t *testing.T, sub string, n int) {
		pubsubtest.Create(t, client, sub)
		for i := range n {
			emb.srv.Publish(pubsubtest.Topic(sub), []byte(fmt.Sprint(i)), nil)
		}
	}}
}

// Every source keeps the same promises to the tracker.
func TestSourceContract(t *testing.T) {
	for name, newFixture := range map[string]func(*testing.T) sourceFixture{
		"monitoring": monitoringFixture,
		"embedded":   embeddedFixture,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			full := "projects/p-contract/subscriptions/full"
			empty := "projects/p-contract/subscriptions/empty"
			missing := "projects/p-contract/subscriptions/missing"
			f.backlog(t, full, 7)
			f.backlog(t, empty, 0)
			before := time.Now()
			got, err := f.source.Fetch(context.Background(), []string{full, empty, missing})
			if err != nil {
				t.Fatal(err)
			}
			if p, ok := got[full]; !ok || p.Messages != 7 {
				t.Errorf("full: want 7 messages, got %+v (present %v)", p, ok)
			}
			if p, ok := got[empty]; !ok || p.Messages != 0 {
				t.Errorf("empty: want a point of 0, got %+v (present %v)", p, ok)
			}
			if p, ok := got[missing]; ok {
				t.Errorf("missing subscription: want no point, got %+v", p)
			}
			for sub, p := range got {
				if p.At.After(time.Now()) || before.Sub(p.At) > 5*time.Minute {
					t.Errorf("%s: point observed at %v, want within the last 5 minutes", sub, p.At)
				}
			}
			if _, err := f.source.Fetch(context.Background(), []string{"jobs"}); err == nil {
				t.Error("a malformed name must be an error")
			}
			if got, err := f.source.Fetch(context.Background(), nil); err != nil || len(got) != 0 {
				t.Errorf("no subscriptions: want nothing, got %v %v", got, err)
			}
		})
	}
}
