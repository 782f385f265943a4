//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orgscaler/orgscaler/fleet"
)

// steps is what the duties of both replicas did, in order.
type steps struct {
	mu   sync.Mutex
	what []string
}

func (s *steps) add(f string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.what = append(s.what, fmt.Sprintf(f, a...))
}

func (s *steps) since(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.what[n:])
}

type stepDuty struct {
	s    *steps
	name string
}

func (d stepDuty) Lead(string) { d.s.add("%s lead", d.name) }
func (d stepDuty) Follow()     { d.s.add("%s follow", d.name) }

// The fleet's hand-over on the real kube-apiserver's Lease: one replica
// holds it and leads its duties; at Stop its duties follow, last first,
// and it hands over before it releases the Lease, so the other replica's
// duties lead only after all that, and the Lease names it; at its Stop
// the Lease is released.
func TestFleetHandOverOnARealLease(t *testing.T) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	s := &steps{}
	replica := func(id string) *fleet.Fleet {
		return fleet.New(fleet.Options{Config: cfg, Namespace: "default", Name: "lease-e2e", Identity: id,
			Duties: []fleet.Duty{stepDuty{s, id + "/ledger"}, stepDuty{s, id + "/tally"}},
			Handover: func(context.Context) error {
				s.add("%s handover", id)
				return nil
			}})
	}
	holder := func() string {
		l, err := kube.CoordinationV1().Leases("default").Get(context.Background(), "lease-e2e", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	a, b := replica("scaler-0"), replica("scaler-1")
	defer a.Stop()
	defer b.Stop()
	a.Start()
	waitFor(t, 30*time.Second, "scaler-0 leading", func() (string, bool) { return "", a.Leading() })
	b.Start()
	if h := holder(); h != "scaler-0" {
		t.Fatalf("the Lease names %q while scaler-0 leads", h)
	}
	mark := len(s.since(0))
	a.Stop()
	if got, want := s.since(mark), []string{"scaler-0/tally follow", "scaler-0/ledger follow", "scaler-0 handover"}; !slices.Equal(got, want) {
		t.Fatalf("when scaler-0's Stop returned: %q; want its duties followed last first, then the hand-over", got)
	}
	waitFor(t, 30*time.Second, "scaler-1 leading", func() (string, bool) { return "", b.Leading() })
	if got, want := s.since(mark+3), []string{"scaler-1/ledger lead", "scaler-1/tally lead"}; !slices.Equal(got, want) {
		t.Fatalf("after the hand-over: %q; want scaler-1's term", got)
	}
	if h := holder(); h != "scaler-1" {
		t.Fatalf("the Lease names %q after the hand-over; want scaler-1", h)
	}
	b.Stop()
	if h := holder(); h != "" {
		t.Fatalf("the Lease still names %q after the last replica stopped; want it released", h)
	}
}
