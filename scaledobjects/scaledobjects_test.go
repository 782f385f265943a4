package scaledobjects

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/orgscaler/orgscaler/trigger"
)

// object is a ScaledObject as the API server serves it.
func object(ns, name string, triggers ...map[string]any) *unstructured.Unstructured {
	list := make([]any, len(triggers))
	for i, t := range triggers {
		list[i] = t
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"namespace": ns, "name": name, "uid": "u-" + name, "labels": map[string]any{"big": strings.Repeat("x", 100)}},
		"spec":     map[string]any{"scaleTargetRef": map[string]any{"name": name}, "triggers": list},
	}}
	return u
}

func external(md map[string]string) map[string]any {
	m := map[string]any{}
	for k, v := range md {
		m[k] = v
	}
	return map[string]any{"type": "external-push", "metadata": m}
}

var (
	pynode = map[string]string{"scalerAddress": "orgscaler.keda:9090", "workload": "pynode", "org": "acme"}
	worker = map[string]string{"scalerAddress": "orgscaler.keda:9090", "workload": "worker", "subscription": "projects/p/subscriptions/jobs"}
)

func metricOf(t *testing.T, md map[string]string) string {
	t.Helper()
	w, err := trigger.ParseMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	return w.MetricName()
}

func TestCheckAdmitsOnlyRealTriggers(t *testing.T) {
	r := newRegistry(Options{})
	r.set("scaledobjects", object("ml", "pynode-acme", external(pynode),
		map[string]any{"type": "cpu", "metadata": map[string]any{"workload": "pynode", "org": "evil"}}))
	if err := r.Check("ml", "pynode-acme", pynode); err != nil {
		t.Fatalf("the object's own trigger: %v", err)
	}
	var nf *NotFoundError
	for _, c := range []struct {
		ns, name string
		md       map[string]string
		want     string
	}{
		{"ml", "invented", pynode, "ml/invented: no such ScaledObject or ScaledJob"},
		{"ml", "pynode-acme", map[string]string{"workload": "pynode", "org": "other"}, `no external trigger with workload "pynode", org "other"`},
		{"ml", "pynode-acme", map[string]string{"workload": "pynode", "org": "evil"}, "no external trigger"}, // a cpu trigger is not ours
		{"", "", pynode, "names no ScaledObject"},
	} {
		err := r.Check(c.ns, c.name, c.md)
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s/%s %v: want NotFound with %q, got %v", c.ns, c.name, c.md, c.want, err)
		}
	}
	// A ScaledJob of the same name adds its triggers.
	r.set("scaledjobs", object("ml", "pynode-acme", external(worker)))
	if err := r.Check("ml", "pynode-acme", worker); err != nil {
		t.Fatalf("the ScaledJob's trigger: %v", err)
	}
	// What the leader answers for itself: our triggers only, by org.
	if got := r.Targets("acme"); len(got) != 1 || got[0].Key != (Key{"ml", "pynode-acme"}) || got[0].Workload.MetricName() != metricOf(t, pynode) {
		t.Errorf("Targets(acme) = %+v, want the pynode trigger alone", got)
	}
	if got := r.Targets(""); len(got) != 2 {
		t.Errorf("Targets() = %+v, want the pynode and worker triggers", got)
	}
	if got := r.Targets("evil"); len(got) != 0 {
		t.Errorf("Targets(evil) = %+v: a cpu trigger is not ours", got)
	}
	// A paused object: KEDA does not ask, so the leader does not count it;
	// a request for it is still its own.
	paused := object("ml", "pynode-paused", external(map[string]string{"workload": "pynode", "org": "acme"}))
	paused.SetAnnotations(map[string]string{"autoscaling.keda.sh/paused": "true"})
	stripped, _ := strip(paused)
	r.set("scaledobjects", stripped)
	if got := r.Targets("acme"); len(got) != 1 || got[0].Key.Name != "pynode-acme" {
		t.Errorf("Targets(acme) with a paused object = %+v; want pynode-acme alone", got)
	}
	if err := r.Check("ml", "pynode-paused", map[string]string{"workload": "pynode", "org": "acme"}); err != nil {
		t.Errorf("a paused object's trigger: %v", err)
	}
	// paused: "false" is KEDA's way to unpause.
	paused.SetAnnotations(map[string]string{"autoscaling.keda.sh/paused": "false"})
	stripped, _ = strip(paused)
	r.set("scaledobjects", stripped)
	if got := r.Targets("acme"); len(got) != 2 {
		t.Errorf("Targets(acme) once unpaused = %+v; want both objects", got)
	}
	paused.SetAnnotations(map[string]string{"autoscaling.keda.sh/paused-replicas": "0"})
	stripped, _ = strip(paused)
	r.set("scaledobjects", stripped)
	// Gone, it is gone from the org's objects too.
	r.remove("scaledobjects", object("ml", "pynode-acme"))
	if got := r.Targets("acme"); len(got) != 0 {
		t.Errorf("Targets(acme) after the delete = %+v", got)
	}
}

func TestGoneSaysWhatNoTriggerNamesAnyMore(t *testing.T) {
	var got []Gone
	r := newRegistry(Options{OnGone: func(g Gone) { got = append(got, g) }})
	r.set("scaledobjects", object("ml", "a", external(pynode), external(worker)))
	r.set("scaledobjects", object("ml", "b", external(worker)))
	if len(got) != 0 {
		t.Fatalf("adding takes nothing away: %+v", got)
	}
	// a drops its worker trigger: b still names the subscription and metric.
	r.set("scaledobjects", object("ml", "a", external(pynode)))
	want := Gone{Key: Key{"ml", "a"}, ObjectMetrics: []string{metricOf(t, worker)}}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("trigger removed: want %+v, got %+v", want, got)
	}
	// b is deleted (as a tombstone): nothing names the subscription now.
	r.remove("scaledobjects", cache.DeletedFinalStateUnknown{Key: "ml/b", Obj: object("ml", "b", external(worker))})
	want = Gone{Key: Key{"ml", "b"}, Deleted: true, Metrics: []string{metricOf(t, worker)},
		Subscriptions: []string{"projects/p/subscriptions/jobs"}, ObjectMetrics: []string{metricOf(t, worker)}}
	if len(got) != 2 || !reflect.DeepEqual(got[1], want) {
		t.Fatalf("object deleted: want %+v, got %+v", want, got[1:])
	}
	if err := r.Check("ml", "b", worker); err == nil {
		t.Fatal("a deleted object's trigger is still admitted")
	}
	r.remove("scaledobjects", object("ml", "a"))
	if r.Len() != 0 || len(r.metrics) != 0 || len(r.subs) != 0 {
		t.Fatalf("everything deleted: want nothing kept, got %d objects, %v, %v", r.Len(), r.metrics, r.subs)
	}
}

// The informer keeps an object's identity and triggers only.
func TestStripKeepsTriggersOnly(t *testing.T) {
	in := object("ml", "a", external(pynode))
	out, err := strip(in)
	if err != nil {
		t.Fatal(err)
	}
	u := out.(*unstructured.Unstructured)
	if u.GetName() != "a" || u.GetNamespace() != "ml" || string(u.GetUID()) != "u-a" || u.GetLabels() != nil {
		t.Fatalf("identity kept, labels dropped: %v", u.Object)
	}
	if _, found, _ := unstructured.NestedMap(u.Object, "spec", "scaleTargetRef"); found {
		t.Fatal("scaleTargetRef should be dropped")
	}
	if ts := triggersOf(u); len(ts) != 1 || ts[0].org != "acme" {
		t.Fatalf("triggers kept: %+v", ts)
	}
}

// A pool reads an object's replica bounds through the informer's
// stripped copy: KEDA's defaults when unset, the object's own when set.
func TestTargetsCarryReplicaBounds(t *testing.T) {
	r := newRegistry(Options{})
	bounded := object("ml", "bounded", external(pynode))
	_ = unstructured.SetNestedField(bounded.Object, int64(1), "spec", "minReplicaCount")
	_ = unstructured.SetNestedField(bounded.Object, int64(4), "spec", "maxReplicaCount")
	for _, u := range []*unstructured.Unstructured{bounded, object("ml", "default", external(worker))} {
		s, err := strip(u)
		if err != nil {
			t.Fatal(err)
		}
		r.set("scaledobjects", s)
	}
	got := map[string][2]int32{}
	for _, tg := range r.Targets("") {
		got[tg.Key.Name] = [2]int32{tg.Min, tg.Max}
	}
	if got["bounded"] != [2]int32{1, 4} || got["default"] != [2]int32{DefaultMinReplicas, DefaultMaxReplicas} {
		t.Fatalf("bounds: %v; want bounded 1..4, default 0..100", got)
	}
}
