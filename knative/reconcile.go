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

	"github.com/orgscaler/orgscaler/decide"
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
	out.SetLabels(keep(u.GetLabels(), LabelOrg, LabelWarmMinScale, LabelGPUs, labelService))
	out.SetAnnotations(keep(u.GetAnnotations(), AnnotationMin))
	if latest, ok, _ := unstructured.NestedString(u.Object, "status", "latestReadyRevisionName"); ok {
		_ = unstructured.SetNestedField(out.Object, latest, "status", "latestReadyRevisionName")
	}
	return out, nil
}

// serviceOf reads a stripped Service, saying why a label is unusable.
func serviceOf(u *unstructured.Unstructured) *service {
	l := u.GetLabels()
	s := &service{uid: u.GetUID(), org: l[LabelOrg], warm: "1"}
	s.latest, _, _ = unstructured.NestedString(u.Object, "status", "latestReadyRevisionName")
	if !decide.ValidOrg(s.org) {
		s.badLabel = fmt.Sprintf("label %s=%q is not an org id (lowercase letters, digits, '-', '_' and '.', at most %d characters)", LabelOrg, s.org, decide.MaxOrgLen)
	}
	if v, ok := l[LabelWarmMinScale]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err != nil || n < 1 {
			s.badLabel = fmt.Sprintf("label %s=%q is not a whole number of at least 1", LabelWarmMinScale, v)
		} else {
			s.warm = strconv.FormatInt(n, 10)
		}
	}
	if v, ok := l[LabelGPUs]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err != nil || n < 0 {
			s.badLabel = fmt.Sprintf("label %s=%q is not a whole number of GPUs", LabelGPUs, v)
		} else {
			s.gpus = n
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

func (a *Actuator) removeService(k Key) {
	a.mu.Lock()
	old := a.services[k]
	if old != nil {
		a.unindex(old.org, k)
	}
	delete(a.services, k)
	delete(a.patched, k)
	a.mu.Unlock()
	if old != nil && a.o.Gone != nil {
		a.o.Gone(k)
	}
}

func (a *Actuator) unindex(org string, k Key) {
	delete(a.byOrg[org], k)
	if len(a.byOrg[org]) == 0 {
		delete(a.byOrg, org)
	}
}

func (a *Actuator) setRevision(u *unstructured.Unstructured) {
	k := Key{Namespace: u.GetNamespace(), Name: u.GetName()}
	v, has := u.GetAnnotations()[AnnotationMin]
	r := &revision{service: u.GetLabels()[labelService], minScale: v, has: has}
	a.mu.Lock()
	a.revisions[k] = r
	s := a.services[Key{Namespace: k.Namespace, Name: r.service}]
	a.mu.Unlock()
	if s != nil && s.latest == k.Name {
		a.queue.Add(Key{Namespace: k.Namespace, Name: r.service}) // changed by someone else: put it right
	}
}

func (a *Actuator) removeRevision(k Key) {
	a.mu.Lock()
	delete(a.revisions, k)
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
	if !a.leading.Load() {
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
	if s != nil {
		sc = *s
		if rv := a.revisions[Key{Namespace: k.Namespace, Name: s.latest}]; rv != nil && s.latest != "" {
			c := *rv
			r = &c
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
	warm, err := a.o.Warm(sc.org)
	if err != nil {
		a.event(k, sc.uid, corev1.EventTypeWarning, ReasonRefused, fmt.Sprintf("org %s: %v", sc.org, err))
		return resultRefused, fmt.Errorf("org %s: %w", sc.org, err) // retried: the limit or the org may change
	}
	want := "0"
	if warm {
		want = sc.warm
	}
	minScale, _ := strconv.ParseInt(want, 10, 64)
	if a.o.Observe != nil {
		a.o.Observe(k, sc.org, sc.gpus, warm, minScale)
	}
	if r.has && r.minScale == want {
		return resultUnchanged, nil
	}
	rk := Key{Namespace: k.Namespace, Name: sc.latest}
	if err := a.patch(ctx, rk, want); err != nil {
		return resultError, err
	}
	a.mu.Lock()
	if r := a.revisions[rk]; r != nil { // ahead of the watch: a reconcile meanwhile sees it right
		r.minScale, r.has = want, true
	}
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

// patch sets the Revision's min-scale annotation, and nothing else.
func (a *Actuator) patch(ctx context.Context, rev Key, value string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationMin: value}}})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.o.Dynamic.Resource(Revisions).Namespace(rev.Namespace).Patch(cctx, rev.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "orgscaler"}); err != nil {
		return fmt.Errorf("patch revision %s: %w", rev, err)
	}
	return nil
}

func (a *Actuator) event(k Key, uid types.UID, eventtype, reason, note string) {
	if a.o.Events != nil {
		a.o.Events.Service(k, uid, eventtype, reason, note)
	}
}
