// Package scaledobjects keeps, from the cluster, the triggers of every
// KEDA ScaledObject and ScaledJob (informers, not polls), so the KEDA port
// answers only a request that a real object's trigger makes, and says what
// went away when an object is deleted or its triggers change, so what was
// kept for it can go too.
package scaledobjects

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/orgscaler/orgscaler/trigger"
)

// The resources KEDA calls external scalers for.
var (
	ScaledObjects = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	ScaledJobs    = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}
)

// Key names an object as KEDA's ScaledObjectRef does: a ScaledObject and a
// ScaledJob of the same name share it.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// extTrigger is one external trigger of an object: what a request must match,
// and, when its metadata parses, the metric the scaler answers it under.
type extTrigger struct {
	workload, org, subscription string
	metric                      string // "" when the metadata does not parse
	parsed                      trigger.Workload
	paused                      bool  // its object is paused: KEDA does not ask
	min, max                    int32 // its object's replica bounds
}

// KEDA's annotations that pause an object: KEDA then neither scales it
// nor asks its scalers.
var pauseAnnotations = []string{"autoscaling.keda.sh/paused", "autoscaling.keda.sh/paused-replicas"}

// paused reads them as KEDA does: paused-replicas pauses whenever it is
// set; paused unless it says false.
func paused(annotations map[string]string) bool {
	if _, ok := annotations["autoscaling.keda.sh/paused-replicas"]; ok {
		return true
	}
	v, ok := annotations["autoscaling.keda.sh/paused"]
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// Target is one external trigger of an object whose metadata parses: what
// the fleet's leader answers for itself, to count it once for the fleet.
type Target struct {
	Key      Key
	Workload trigger.Workload
	// Min and Max are its object's minReplicaCount and maxReplicaCount
	// (KEDA's defaults, 0 and 100, when unset): a GPU pool grants at least
	// the one and asks for no more than the other.
	Min, Max int32
}

// Gone is what went away with a change of one object: the object itself
// (Deleted), the metrics and subscriptions no trigger of any object names
// any more, and the metrics this object's triggers no longer have.
type Gone struct {
	Key           Key
	Deleted       bool
	Metrics       []string
	Subscriptions []string
	ObjectMetrics []string
}

// NotFoundError is a request that no object's trigger makes.
type NotFoundError struct {
	Key    Key
	reason string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("scaledObjectRef %s: %s; the scaler answers only the triggers of ScaledObjects and ScaledJobs in its cluster", e.Key, e.reason)
}

// ErrNotSynced is returned until the informers have listed every object.
var ErrNotSynced = fmt.Errorf("the scaler has not yet read every ScaledObject and ScaledJob from the cluster: it answers once it has")

// Options configure a Registry.
type Options struct {
	Logger *slog.Logger
	// OnGone is told, outside the registry's lock, of what each change
	// took away. It must not block for long.
	OnGone func(Gone)
}

// Registry holds the external triggers of every ScaledObject and ScaledJob.
type Registry struct {
	log     *slog.Logger
	onGone  func(Gone)
	factory dynamicinformer.DynamicSharedInformerFactory
	synced  []cache.InformerSynced

	mu      sync.RWMutex
	objs    map[Key]map[string][]extTrigger // by key, then by resource
	metrics map[string]int                  // metric → triggers naming it
	subs    map[string]int                  // subscription → triggers naming it
	byOrg   map[string]map[Key]int          // org → the objects whose triggers name it (how many)
}

// New returns a Registry over the cluster dyn reaches; Run starts it.
func New(dyn dynamic.Interface, o Options) (*Registry, error) {
	r := newRegistry(o)
	r.factory = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	for _, gvr := range []schema.GroupVersionResource{ScaledObjects, ScaledJobs} {
		inf := r.factory.ForResource(gvr).Informer()
		// Keep only what matching needs: a cluster's objects, whole, are
		// far bigger than their triggers.
		if err := inf.SetTransform(strip); err != nil {
			return nil, fmt.Errorf("informer on %s: %w", gvr.Resource, err)
		}
		resource := gvr.Resource
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { r.set(resource, obj) },
			UpdateFunc: func(_, obj any) { r.set(resource, obj) },
			DeleteFunc: func(obj any) { r.remove(resource, obj) },
		}); err != nil {
			return nil, fmt.Errorf("informer on %s: %w", gvr.Resource, err)
		}
		r.synced = append(r.synced, inf.HasSynced)
	}
	return r, nil
}

func newRegistry(o Options) *Registry {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{log: o.Logger.With("component", "scaledobjects"), onGone: o.OnGone,
		objs: map[Key]map[string][]extTrigger{}, metrics: map[string]int{}, subs: map[string]int{}, byOrg: map[string]map[Key]int{}}
}

// Run watches the cluster until ctx ends.
func (r *Registry) Run(ctx context.Context) {
	r.factory.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), r.synced...) {
		r.mu.RLock()
		n := len(r.objs)
		r.mu.RUnlock()
		r.log.Info("read every ScaledObject and ScaledJob: answering KEDA", "objects", n)
	}
	<-ctx.Done()
	r.factory.Shutdown()
}

// Synced reports whether every object has been listed.
func (r *Registry) Synced() bool {
	for _, s := range r.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Check returns nil when the object namespace/name exists and has an
// external trigger whose workload, org and subscription are the request's;
// a *NotFoundError otherwise, or ErrNotSynced before the first list.
func (r *Registry) Check(namespace, name string, md map[string]string) error {
	if !r.Synced() {
		return ErrNotSynced
	}
	k := Key{namespace, name}
	if namespace == "" || name == "" {
		return &NotFoundError{Key: k, reason: "the request names no ScaledObject (KEDA always does; scalerctl ask does not)"}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	byRes, ok := r.objs[k]
	if !ok {
		return &NotFoundError{Key: k, reason: "no such ScaledObject or ScaledJob"}
	}
	want := extTrigger{workload: md[trigger.KeyWorkload], org: md[trigger.KeyOrg], subscription: md[trigger.KeySubscription]}
	for _, ts := range byRes {
		for _, t := range ts {
			if t.workload == want.workload && t.org == want.org && t.subscription == want.subscription {
				return nil
			}
		}
	}
	return &NotFoundError{Key: k, reason: fmt.Sprintf("it has no external trigger with workload %q, org %q and subscription %q",
		trigger.Clip(want.workload), trigger.Clip(want.org), trigger.Clip(want.subscription))}
}

// Targets lists every trigger whose metadata parses, of every object not
// paused, or only of those naming org when org is not "".
func (r *Registry) Targets(org string) []Target {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Target
	add := func(k Key) {
		for _, ts := range r.objs[k] {
			for _, t := range ts {
				if t.metric != "" && !t.paused && (org == "" || t.org == org) {
					out = append(out, Target{Key: k, Workload: t.parsed, Min: t.min, Max: t.max})
				}
			}
		}
	}
	if org == "" {
		for k := range r.objs {
			add(k)
		}
		return out
	}
	for k := range r.byOrg[org] {
		add(k)
	}
	return out
}

// Len is the number of objects held.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.objs)
}

func (r *Registry) set(resource string, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	ts := triggersOf(u)
	pause := paused(u.GetAnnotations())
	lo, hi := replicaBounds(u)
	for i := range ts {
		ts[i].paused, ts[i].min, ts[i].max = pause, lo, hi
	}
	r.apply(resource, Key{u.GetNamespace(), u.GetName()}, ts)
}

func (r *Registry) remove(resource string, obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	r.apply(resource, Key{u.GetNamespace(), u.GetName()}, nil)
}

// apply puts ts as the triggers of k's resource (nil: the object is gone)
// and tells OnGone what went away.
func (r *Registry) apply(resource string, k Key, ts []extTrigger) {
	r.mu.Lock()
	before := r.metricsOf(k)
	old := r.objs[k][resource]
	for _, t := range old {
		r.release(k, t)
	}
	for _, t := range ts {
		r.hold(k, t)
	}
	if ts == nil {
		delete(r.objs[k], resource)
		if len(r.objs[k]) == 0 {
			delete(r.objs, k)
		}
	} else {
		if r.objs[k] == nil {
			r.objs[k] = map[string][]extTrigger{}
		}
		r.objs[k][resource] = ts
	}
	g := Gone{Key: k, Deleted: r.objs[k] == nil}
	after := r.metricsOf(k)
	for m := range before {
		if !after[m] {
			g.ObjectMetrics = append(g.ObjectMetrics, m)
		}
	}
	for _, t := range old {
		if t.metric != "" && r.metrics[t.metric] == 0 {
			g.Metrics = append(g.Metrics, t.metric)
			delete(r.metrics, t.metric)
		}
		if t.subscription != "" && r.subs[t.subscription] == 0 {
			g.Subscriptions = append(g.Subscriptions, t.subscription)
			delete(r.subs, t.subscription)
		}
	}
	r.mu.Unlock()
	if r.onGone != nil && (g.Deleted || len(g.Metrics)+len(g.Subscriptions)+len(g.ObjectMetrics) > 0) {
		g.Metrics, g.Subscriptions, g.ObjectMetrics = dedupe(g.Metrics), dedupe(g.Subscriptions), dedupe(g.ObjectMetrics)
		r.log.Debug("triggers gone", "object", k, "deleted", g.Deleted, "metrics", g.Metrics, "subscriptions", g.Subscriptions)
		r.onGone(g)
	}
}

// hold and release count the triggers naming each metric and
// subscription. Caller holds r.mu.
func (r *Registry) hold(k Key, t extTrigger) {
	if t.metric != "" {
		r.metrics[t.metric]++
	}
	if t.subscription != "" {
		r.subs[t.subscription]++
	}
	if t.org != "" {
		if r.byOrg[t.org] == nil {
			r.byOrg[t.org] = map[Key]int{}
		}
		r.byOrg[t.org][k]++
	}
}

func (r *Registry) release(k Key, t extTrigger) {
	if t.metric != "" {
		r.metrics[t.metric]--
	}
	if t.subscription != "" {
		r.subs[t.subscription]--
	}
	if objs := r.byOrg[t.org]; objs != nil {
		if objs[k]--; objs[k] <= 0 {
			delete(objs, k)
		}
		if len(objs) == 0 {
			delete(r.byOrg, t.org)
		}
	}
}

// metricsOf is the set of metrics k's triggers have. Caller holds r.mu.
func (r *Registry) metricsOf(k Key) map[string]bool {
	out := map[string]bool{}
	for _, ts := range r.objs[k] {
		for _, t := range ts {
			if t.metric != "" {
				out[t.metric] = true
			}
		}
	}
	return out
}

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// triggersOf reads an object's external triggers. Never nil, so an object
// without any is still known (and answers nothing).
func triggersOf(u *unstructured.Unstructured) []extTrigger {
	out := []extTrigger{}
	list, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		if typ, _ := m["type"].(string); typ != "external" && typ != "external-push" {
			continue
		}
		md := map[string]string{}
		if raw, ok := m["metadata"].(map[string]any); ok {
			for k, v := range raw {
				if s, ok := v.(string); ok {
					md[k] = s
				}
			}
		}
		t := extTrigger{workload: md[trigger.KeyWorkload], org: md[trigger.KeyOrg], subscription: md[trigger.KeySubscription]}
		if w, err := trigger.ParseMetadata(md); err == nil {
			t.metric, t.parsed = w.MetricName(), w
		}
		out = append(out, t)
	}
	return out
}

// KEDA's defaults for an object's replica bounds.
const (
	DefaultMinReplicas = 0
	DefaultMaxReplicas = 100
)

// replicaBounds reads an object's minReplicaCount and maxReplicaCount as
// KEDA does, with its defaults.
func replicaBounds(u *unstructured.Unstructured) (lo, hi int32) {
	lo, hi = DefaultMinReplicas, DefaultMaxReplicas
	if v, ok, _ := unstructured.NestedInt64(u.Object, "spec", "minReplicaCount"); ok && v >= 0 && v <= 1<<30 {
		lo = int32(v)
	}
	if v, ok, _ := unstructured.NestedInt64(u.Object, "spec", "maxReplicaCount"); ok && v >= 0 && v <= 1<<30 {
		hi = int32(v)
	}
	return lo, hi
}

// strip keeps an object's identity, replica bounds and triggers, dropping the rest
// before the informer stores it.
func strip(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetNamespace(u.GetNamespace())
	out.SetName(u.GetName())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	var kept map[string]string
	for _, a := range pauseAnnotations {
		if v, ok := u.GetAnnotations()[a]; ok {
			if kept == nil {
				kept = map[string]string{}
			}
			kept[a] = v
		}
	}
	out.SetAnnotations(kept)
	if triggers != nil {
		_ = unstructured.SetNestedSlice(out.Object, triggers, "spec", "triggers")
	}
	for _, f := range []string{"minReplicaCount", "maxReplicaCount"} {
		if v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", f); ok {
			_ = unstructured.SetNestedField(out.Object, v, "spec", f)
		}
	}
	return out, nil
}
