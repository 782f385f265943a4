package readiness

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type refuseAll struct{}

var errNoSuchObject = errors.New("no such ScaledObject")

func (refuseAll) Check(string, string, map[string]string) error { return errNoSuchObject }

// KEDA's calls are refused while the replica loads a snapshot or its clock
// is off, each with its own reason, and otherwise go to the next check.
func TestAdmit(t *testing.T) {
	g := New(nil)
	a := g.Admit(refuseAll{})
	if err := a.Check("ml", "x", nil); !errors.Is(err, errNoSuchObject) {
		t.Fatalf("open gate: %v; want the next check's answer", err)
	}
	g.Loading()
	if err := a.Check("ml", "x", nil); !errors.Is(err, ErrLoading) || g.Current() || g.HoldsAll() {
		t.Fatalf("loading: %v (current %v); want ErrLoading", err, g.Current())
	}
	g.Loaded()
	g.Skewed(true)
	if err := a.Check("ml", "x", nil); !errors.Is(err, ErrClockSkew) || g.Current() || !g.HoldsAll() {
		t.Fatalf("skewed: %v (current %v); want ErrClockSkew", err, g.Current())
	}
	g.Skewed(false)
	if err := g.Admit(nil).Check("ml", "x", nil); err != nil || !g.Current() {
		t.Fatalf("open gate, no next check: %v", err)
	}
}

// The port's health follows the gate and the app's conditions.
func TestWatch(t *testing.T) {
	var fresh atomic.Bool
	g := New(nil, Condition{Why: "backlog data not fresh", OK: fresh.Load})
	h := health.NewServer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Watch(ctx, h, "", "externalscaler.ExternalScaler")
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "externalscaler.ExternalScaler"})
		if err != nil {
			return healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		}
		return r.GetStatus()
	}
	until := func(what string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for status() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %s; want %s", what, status(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	until("a condition not met", healthpb.HealthCheckResponse_NOT_SERVING)
	fresh.Store(true)
	until("every condition met", healthpb.HealthCheckResponse_SERVING)
	g.Loading()
	until("loading", healthpb.HealthCheckResponse_NOT_SERVING)
	g.Loaded()
	until("loaded again", healthpb.HealthCheckResponse_SERVING)
	g.Skewed(true)
	until("skewed", healthpb.HealthCheckResponse_NOT_SERVING)
}
