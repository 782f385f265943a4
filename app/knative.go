package app

import (
	"context"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/api"
	"github.com/orgscaler/orgscaler/knative"
	"github.com/orgscaler/orgscaler/usage"
)

// knativeMetric names a Knative Service's figures in the ledger, where a
// ScaledObject's carry their trigger's metric.
const knativeMetric = "knative-min-scale"

// newKnative starts keeping labelled Knative Services at their orgs'
// warmth (--knative). In a fleet only the leader acts, as it alone records
// Events and counts GPU-hours.
func (a *App) newKnative(dyn dynamic.Interface) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ko := knative.Options{Dynamic: dyn, Logger: a.opts.Logger, Registerer: a.registry, Now: a.opts.Now,
		Org: a.store.Sight, Observe: a.observeKnative, Gone: a.knativeGone}
	if a.events != nil {
		ko.Events = a.events
	}
	k, err := knative.New(ctx, ko)
	if err != nil {
		return err
	}
	a.knative = k
	return nil
}

// observeKnative counts a Knative Service in the GPU-hours ledger by the
// rule of a ScaledObject: its warm intervals times its GPUs.
func (a *App) observeKnative(svc knative.Key, o activity.Org, gpus, minScale int64) {
	now := a.opts.Now()
	a.ledger.Observe(usage.ID(svc.String(), knativeMetric), usage.Answer{
		Kind: "pynode", Org: o.ID, GPUs: gpus, Active: o.Warmth(now).Warm, Replicas: minScale, Cause: usage.OrgCause(o),
	}, now)
}

// knativeGone stops counting a Service that is gone or unlabelled.
func (a *App) knativeGone(svc knative.Key) {
	a.ledger.Forget(usage.ID(svc.String(), knativeMetric), a.opts.Now())
}

// knativeServices is what Explain lists of an org's Knative Services.
func (a *App) knativeServices() api.KnativeServices {
	if a.knative == nil {
		return nil
	}
	return a.knative
}
