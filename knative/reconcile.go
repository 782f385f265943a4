package knative

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orgscaler/orgscaler/activity"
	"github.com/orgscaler/orgscaler/kubeevents"
	"github.com/orgscaler/orgscaler/orgid"
	"github.com/orgscaler/orgscaler/trigger"
)

type metrics struct {
	reconciles *prometheus.CounterVec
}

// Results of a reconcile of one Knative Service.
const (
	resultUnchanged = "unchanged" // the Revision was already right: no patch
	resultPatched   = "patched"
	resultError     = "error"   // the patch failed, or the Revision is not read yet: retried
	resultRefused   = "refused" // a label or the org cannot be used: an Event says why
	resultWaiting   = "waiting" // no ready Revision yet
)

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orgscaler_knative_reconciles_total",
		Help: "Reconciles of a labelled Knative Service's latest ready Revision, by result: unchanged (already right, no patch), patched, error (retried with backoff), refused (a label or the org cannot be used), waiting (no ready Revision).",
	}, []string{"result"})}
	for _, r := range []string{resultUnchanged, resultPatched, resultError, resultRefused, resultWaiting} {
		m.reconciles.WithLabelValues(r)
	}
	r.MustRegister(m.reconciles)
	return m
}

// strip keeps what the actuator reads of a Service or Revision.
func strip(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetNamespace(u.GetNamespace())
	out.SetName(u.GetName())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	keep := func(from map[string]string, keys ...string) map[string]string {
		var m map[string]string
		for _, k := range keys {
			if v, ok := from[k]; ok {
				if m == nil {
					m = map[string]string{}
				}
				m[k] = v
			}
		}
		return m
	}
	out.SetLabels(keep(u.GetLabels(), LabelOrg, LabelWarmMinScale, LabelGPUs, LabelGPUType, labelService, labelGeneration))
	out.SetAnnotations(keep(u.GetAnnotations(), AnnotationMin))
	if latest, ok, _ := unstructured.NestedString(u.Object, "status", "latestReadyRevisionName"); ok {
		_ = unstructured.SetNestedField(out.Object, latest, "status", "latestReadyRevisionName")
	}
	return out, nil
}

// serviceOf reads a stripped Service, saying why a label is unusable.
func serviceOf(u *unstructured.Unstructured) *service {
	l := u.GetLabels()
	s := &service{uid: u.GetUID(), org: l[LabelOrg], warm: 1}
	s.latest, _, _ = unstructured.NestedString(u.Object, "status", "latestReadyRevisionName")
	if !orgid.Valid(s.org) {
		s.badLabel = fmt.Sprintf("label %s=%q is not an org id: expected %s", LabelOrg, s.org, orgid.Expected)
	}
	if v, ok := l[LabelWarmMinScale]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err != nil || n < 1 {
			s.badLabel = fmt.Sprintf("label %s=%q is not a whole number of at least 1", LabelWarmMinScale, v)
		} else {
			s.warm = n
		}
	}
	if v, ok := l[LabelGPUs]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err != nil || n < 0 || n > trigger.MaxGPUsPerReplica {
			s.badLabel = fmt.Sprintf("label %s=%q is not a whole number of GPUs from 0 to %d", LabelGPUs, v, trigger.MaxGPUsPerReplica)
		} else {
			s.gpus = n
		}
	}
	if v, ok := l[LabelGPUType]; ok {
		if !trigger.ValidGPUType(v) {
			s.badLabel = fmt.Sprintf("label %s=%q is not a GPU type: expected 1 to 32 lower-case letters, digits, '.' or '-'", LabelGPUType, v)
		} else {
			s.gpuType = v
		}
	}
	return s
}

func (a *Actuator) setService(u *unstructured.Unstructured) {
	k := Key{Namespace: u.GetNamespace(), Name: u.GetName()}
	s := serviceOf(u)
	a.mu.Lock()
	if old := a.services[k]; old != nil && old.org != s.org {
		a.unindex(old.org, k)
	}
	a.services[k] = s
	if a.byOrg[s.org] == nil {
		a.byOrg[s.org] = map[Key]bool{}
	}
	a.byOrg[s.org][k] = true
	a.mu.Unlock()
	a.queue.Add(k)
}

func (a *Actuator) removeService(u *unstructured.Unstructured) {
	k := Key{Namespace: u.GetNamespace(), Name: u.GetName()}
	a.mu.Lock()
	old := a.services[k]
	if old != nil {
		a.unindex(old.org, k)
	}
	delete(a.services, k)
	delete(a.patched, k)
	a.mu.Unlock()
	if old != nil && a.o.Ledger != nil {
		a.o.Ledger.ForgetKnative(k.String())
	}
}

func (a *Actuator) unindex(org string, k Key) {
	delete(a.byOrg[org], k)
	if len(a.byOrg[org]) == 0 {
		delete(a.byOrg, org)
	}
}

func (a *Actuator) setRevision(u *unstructured.Unstructured) {
	svc := Key{Namespace: u.GetNamespace(), Name: u.GetLabels()[labelService]}
	gen, _ := strconv.ParseInt(u.GetLabels()[labelGeneration], 10, 64)
	r := &revision{service: svc.Name, minScale: u.GetAnnotations()[AnnotationMin], generation: gen}
	a.mu.Lock()
	if a.revisions[svc] == nil {
		a.revisions[svc] = map[string]*revision{}
	}
	a.revisions[svc][u.GetName()] = r
	s := a.services[svc]
	a.mu.Unlock()
	if s != nil {
		a.queue.Add(svc) // new, or changed by someone else: put it right
	}
}

func (a *Actuator) removeRevision(u *unstructured.Unstructured) {
	svc := Key{Namespace: u.GetNamespace(), Name: u.GetLabels()[labelService]}
	a.mu.Lock()
	delete(a.revisions[svc], u.GetName())
	if len(a.revisions[svc]) == 0 {
		delete(a.revisions, svc)
	}
	a.mu.Unlock()
}

// next reconciles one Service; false once the queue is shut down.
func (a *Actuator) next(ctx context.Context) bool {
	k, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(k)
	if err := a.reconcile(ctx, k); err != nil {
		a.log.Warn("knative service not reconciled, retrying", "service", k, "err", err)
		a.queue.AddRateLimited(k)
		return true
	}
	a.queue.Forget(k)
	return true
}

// reconcile puts the min-scale of k's latest ready Revision at its org's
// warmth, patching only when it differs.
func (a *Actuator) reconcile(ctx context.Context, k Key) error {
	a.act.RLock() // Follow waits for reconciles under way
	defer a.act.RUnlock()
	if !a.leading {
		return nil
	}
	result, err := a.put(ctx, k)
	if result != "" {
		a.metrics.reconciles.WithLabelValues(result).Inc()
	}
	return err
}

// put is reconcile's work, saying how it ended ("" for a Service gone).
func (a *Actuator) put(ctx context.Context, k Key) (string, error) {
	a.mu.Lock()
	s := a.services[k]
	var sc service
	var r *revision // a copy
	var older []string
	if s != nil {
		sc = *s
		if rv := a.revisions[k][s.latest]; rv != nil {
			c := *rv
			r = &c
			for name, o := range a.revisions[k] {
				if o.generation > 0 && o.generation < rv.generation && o.minScale != "" && o.minScale != "0" {
					older = append(older, name)
				}
			}
		}
	}
	a.mu.Unlock()
	switch {
	case s == nil:
		return "", nil // deleted, or its label removed
	case sc.badLabel != "":
		a.event(k, sc.uid, corev1.EventTypeWarning, ReasonRefused, sc.badLabel)
		return resultRefused, nil // a label change brings it back
	case sc.latest == "":
		return resultWaiting, nil // its readiness brings it back
	case r == nil:
		return resultError, fmt.Errorf("revision %s of %s not read yet", sc.latest, k) // the Revision's informer is behind the Service's
	}
	o, err := a.o.Org(sc.org)
	if err != nil {
		// Told once per sweep, not retried sooner: the limit or the org
		// changes on its own time.
		a.event(k, sc.uid, corev1.EventTypeWarning, ReasonRefused, fmt.Sprintf("org %s: %v", sc.org, err))
		return resultRefused, nil
	}
	minScale, warm := MinScale(o, sc.warm, a.o.Now())
	want := strconv.FormatInt(minScale, 10)
	if a.o.Ledger != nil {
		a.o.Ledger.ObserveKnative(k.String(), o, warm, sc.gpus, sc.gpuType, minScale)
	}
	// An older Revision a traffic split still routes to keeps no floor:
	// Knative scales it by its traffic, as min-scale 0 says.
	for _, name := range older {
		if err := a.set(ctx, k, name, "0"); err != nil {
			return resultError, err
		}
	}
	if r.minScale == want {
		if len(older) > 0 {
			return resultPatched, nil
		}
		return resultUnchanged, nil
	}
	if err := a.set(ctx, k, sc.latest, want); err != nil {
		return resultError, err
	}
	a.mu.Lock()
	if _, ok := a.services[k]; ok { // not deleted meanwhile
		a.patched[k] = a.o.Now()
	}
	a.mu.Unlock()
	reason, state := ReasonOrgWoke, "warm"
	if !warm {
		reason, state = ReasonOrgDormant, "dormant"
	}
	a.event(k, sc.uid, corev1.EventTypeNormal, reason, fmt.Sprintf("org %s is %s: min-scale %s on revision %s", sc.org, state, want, sc.latest))
	a.log.Info("min-scale set", "service", k, "revision", sc.latest, "org", sc.org, "min_scale", want)
	return resultPatched, nil
}

// set patches svc's Revision rev to min-scale value, and notes it ahead
// of the watch, so a reconcile meanwhile sees it right.
func (a *Actuator) set(ctx context.Context, svc Key, rev, value string) error {
	if err := a.patch(ctx, Key{Namespace: svc.Namespace, Name: rev}, value); err != nil {
		return err
	}
	a.mu.Lock()
	if r := a.revisions[svc][rev]; r != nil {
		r.minScale = value
	}
	a.mu.Unlock()
	return nil
}

// patch sets the Revision's min-scale annotation, and nothing else.
func (a *Actuator) patch(ctx context.Context, rev Key, value string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationMin: value}}})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.o.Dynamic.Resource(Revisions).Namespace(rev.Namespace).Patch(cctx, rev.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: kubeevents.Controller}); err != nil {
		return fmt.Errorf("patch revision %s: %w", rev, err)
	}
	return nil
}

func (a *Actuator) event(k Key, uid types.UID, eventtype, reason, note string) {
	if a.o.Events != nil {
		a.o.Events.Service(k, uid, eventtype, reason, note)
	}
}

// MinScale is the min-scale of a Service of org o at now: warmMin while
// the warm rule finds the org warm, 0 otherwise.
func MinScale(o activity.Org, warmMin int64, now time.Time) (minScale int64, warm bool) {
	if o.Warmth(now).Warm {
		return warmMin, true
	}
	return 0, false
}
