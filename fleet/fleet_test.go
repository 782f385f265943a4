package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// journal is what the duties of every replica did, in order.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(format string, a ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, fmt.Sprintf(format, a...))
}

func (j *journal) since(n int) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.lines[n:])
}

func (j *journal) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.lines)
}

type duty struct {
	j    *journal
	name string
}

func (d duty) Lead(term string) { d.j.add("%s lead %s", d.name, term) }
func (d duty) Follow()          { d.j.add("%s follow", d.name) }

func replica(j *journal, client *fake.Clientset, id string, ready func() bool) *Fleet {
	return New(Options{Client: client, Namespace: "keda", Name: "orgscaler-leader", Identity: id, Ready: ready,
		Duties: []Duty{duty{j, id + "/ledger"}, duty{j, id + "/tally"}, duty{j, id + "/knative"}},
		Handover: func(context.Context) error {
			j.add("%s handover", id)
			return nil
		}})
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(leaseDuration + 5*time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, leaseDuration+5*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terms replaces each term's name by its replica, for comparing.
func terms(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if at := strings.Index(l, " lead "); at >= 0 {
			l = l[:at] + " lead" // "scaler-0-<nanos>": checked apart
		}
		out[i] = l
	}
	return out
}

// The hand-over order lives here: duties follow from the start, lead in
// order when the replica wins the Lease, follow in the reverse order when
// it stops, and the term hands over before Stop returns and before the
// next replica's duties lead.
func TestDutiesHandOver(t *testing.T) {
	client := fake.NewClientset()
	j := &journal{}
	a := replica(j, client, "scaler-0", nil)
	b := replica(j, client, "scaler-1", nil)
	defer b.Stop()
	if got, want := j.since(0), []string{"scaler-0/ledger follow", "scaler-0/tally follow", "scaler-0/knative follow",
		"scaler-1/ledger follow", "scaler-1/tally follow", "scaler-1/knative follow"}; !slices.Equal(got, want) {
		t.Fatalf("before any Lease: %q; want every duty following", got)
	}
	a.Start()
	eventually(t, "scaler-0 leading", a.Leading)
	b.Start()
	lines := j.since(6)
	if want := []string{"scaler-0/ledger lead", "scaler-0/tally lead", "scaler-0/knative lead"}; !slices.Equal(terms(lines), want) {
		t.Fatalf("scaler-0's term began with %q; want %q", lines, want)
	}
	if !strings.HasPrefix(lines[0], "scaler-0/ledger lead scaler-0-") || lines[0][len("scaler-0/ledger "):] != lines[2][len("scaler-0/knative "):] {
		t.Fatalf("term names %q: want one name per term, after the replica", lines)
	}
	mark := j.len()
	a.Stop()
	if got, want := j.since(mark), []string{"scaler-0/knative follow", "scaler-0/tally follow", "scaler-0/ledger follow", "scaler-0 handover"}; !slices.Equal(got, want) {
		t.Fatalf("when Stop returned: %q; want the duties followed last first, then the hand-over", got)
	}
	eventually(t, "scaler-1 leading", b.Leading)
	if got, want := terms(j.since(mark+4)), []string{"scaler-1/ledger lead", "scaler-1/tally lead", "scaler-1/knative lead"}; !slices.Equal(got, want) {
		t.Fatalf("after the hand-over: %q; want scaler-1's term", got)
	}
	if a.Leading() {
		t.Fatal("scaler-0 still says it leads after Stop")
	}
	a.Stop() // again: nothing more
	if n := j.len(); n != mark+7 {
		t.Fatalf("a second Stop did something: %q", j.since(mark+7))
	}
}

// A replica that cannot lead yet (still loading orgs, or ScaledObjects not
// read) does not stand for the Lease at all; once ready, it does.
func TestStandsOnlyWhenReady(t *testing.T) {
	client := fake.NewClientset()
	j := &journal{}
	var ready atomic.Bool
	asked := make(chan struct{}, 100)
	f := replica(j, client, "scaler-0", func() bool {
		select {
		case asked <- struct{}{}:
		default:
		}
		return ready.Load()
	})
	defer f.Stop()
	f.Start()
	for range 3 {
		<-asked
	}
	if _, err := client.CoordinationV1().Leases("keda").Get(context.Background(), "orgscaler-leader", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Lease while not ready: %v; want none taken", err)
	}
	if f.Leading() || j.len() != 3 {
		t.Fatalf("led while not ready: %q", j.since(0))
	}
	ready.Store(true)
	eventually(t, "leading once ready", f.Leading)
}

// Stop without Start, or before the replica is ready, ends at once.
func TestStopWithoutTerm(t *testing.T) {
	j := &journal{}
	replica(j, fake.NewClientset(), "scaler-0", nil).Stop()
	f := replica(j, fake.NewClientset(), "scaler-1", func() bool { return false })
	f.Start()
	f.Stop()
	if got := j.len(); got != 6 {
		t.Fatalf("duties did %q; want only their first follow", j.since(0))
	}
}

// A hand-over that cannot finish (Pub/Sub wedged) is given up after
// HandoverTimeout: the Lease is released and the next replica leads.
func TestWedgedHandOverIsBounded(t *testing.T) {
	client := fake.NewClientset()
	j := &journal{}
	gaveUp := make(chan error, 1)
	a := New(Options{Client: client, Namespace: "keda", Name: "orgscaler-leader", Identity: "scaler-0",
		Duties: []Duty{duty{j, "scaler-0/ledger"}},
		Handover: func(ctx context.Context) error {
			<-ctx.Done() // Pub/Sub never confirms
			gaveUp <- ctx.Err()
			return ctx.Err()
		}})
	b := replica(j, client, "scaler-1", nil)
	defer b.Stop()
	a.Start()
	eventually(t, "scaler-0 leading", a.Leading)
	b.Start()
	a.Stop()
	if err := <-gaveUp; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the wedged hand-over ended with %v; want its deadline", err)
	}
	eventually(t, "scaler-1 leading after a wedged hand-over", b.Leading)
}
