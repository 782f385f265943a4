package app

import (
	"context"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/feed"
	"github.com/orgscaler/orgscaler/scaledobjects"
	"github.com/orgscaler/orgscaler/usage"
)

// registerKept exports how much the scaler keeps per name a caller gives
// (ScaledObjects, workloads, subscriptions), so a leak shows on a graph.
func (a *App) registerKept() {
	kept := func(what string, f func() int) {
		a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orgscaler_kept", Help: "What the scaler keeps per name callers give: bounded, and pruned when a ScaledObject goes.",
			ConstLabels: prometheus.Labels{"what": what},
		}, func() float64 { return float64(f()) }))
	}
	kept("explain_scaledobjects", func() int { n, _ := a.keda.Kept(); return n })
	kept("last_answers", func() int { _, n := a.keda.Kept(); return n })
	kept("ledger_workloads", a.ledger.Following)
	if a.depth != nil {
		kept("subscriptions", a.depth.tracker.Len)
	}
	if a.events != nil {
		kept("event_scaledobjects", a.events.Tracked)
	}
	if a.objects != nil {
		kept("cluster_scaledobjects", a.objects.Len)
	}
	if a.knative != nil {
		kept("knative_services", a.knative.Len)
	}
}

// pruneIfAway is the store's Prune when this replica was away longer than
// tombstones are kept (the orgs it holds beyond a peer's snapshot were
// deleted elsewhere), nil otherwise.
func (a *App) pruneIfAway() func(keep func(string) bool) (int, error) {
	last := a.store.LastAlive()
	if last.IsZero() || a.opts.Now().Sub(last) <= activity.TombstoneTTL {
		return nil
	}
	a.log.Warn("this replica was away longer than tombstones are kept: it will keep only the orgs a peer's snapshot holds",
		"last_ran", last, "tombstones_kept", activity.TombstoneTTL)
	return a.store.Prune
}

// onGone drops what was kept for triggers that are gone from the cluster.
func (a *App) onGone(g scaledobjects.Gone) {
	so := g.Key.String()
	a.keda.Forget(so, g.Deleted, g.Metrics)
	for _, m := range g.ObjectMetrics {
		a.ledger.Forget(usage.ID(so, m), a.opts.Now())
	}
	if a.depth != nil {
		for _, sub := range g.Subscriptions {
			a.depth.tracker.Forget(sub)
		}
	}
	if g.Deleted && a.events != nil {
		a.events.Forget(g.Key.Namespace, g.Key.Name)
	}
}

// objectsOf names the cluster's objects whose triggers name org.
func (a *App) objectsOf(org string) []types.NamespacedName {
	targets := a.objects.Targets(org)
	out := make([]types.NamespacedName, len(targets))
	for i, t := range targets {
		out[i] = types.NamespacedName{Namespace: t.Key.Namespace, Name: t.Key.Name}
	}
	return out
}

// newFeed dials --activity-subscription, if set: on the embedded Pub/Sub
// when that is the backlog source and no PUBSUB_EMULATOR_HOST says
// otherwise. Acknowledged activity is replicated first, with replication.
func (a *App) newFeed() (*feed.Feed, error) {
	o := a.opts
	if o.ActivitySubscription == "" {
		return nil, nil
	}
	fo := feed.Options{Subscription: o.ActivitySubscription, Recorder: a.store, Logger: o.Logger, Registerer: a.registry, MaxAge: o.IdleWindow, Now: o.Now}
	if a.repl != nil {
		fo.Sync = a.repl.Sync
	}
	if a.depth != nil && a.depth.embedded != nil && os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		fo.ClientOptions = []option.ClientOption{option.WithEndpoint(a.depth.embedded.Addr()), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return feed.New(ctx, fo)
}
