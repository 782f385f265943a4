package usage

import "github.com/orgscaler/orgscaler/activity"

// KnativeMetric names a Knative Service's figures in the ledger, where a
// ScaledObject's carry their trigger's metric.
const KnativeMetric = "knative-min-scale"

// ObserveKnative counts a Knative Service (namespace/name) of org o by the
// rule of a ScaledObject: its warm intervals times its GPUs, at the
// min-scale the actuator keeps (warm: what the actuator found).
func (l *Ledger) ObserveKnative(svc string, o activity.Org, warm bool, gpus int64, gpuType string, minScale int64) {
	l.Observe(ID(svc, KnativeMetric), Answer{
		Kind: "pynode", Org: o.ID, GPUs: gpus, GPUType: gpuType, Active: warm, Replicas: minScale, Cause: OrgCause(o),
	}, l.now())
}

// ForgetKnative stops counting a Service that is gone or unlabelled.
func (l *Ledger) ForgetKnative(svc string) { l.Forget(ID(svc, KnativeMetric), l.now()) }
