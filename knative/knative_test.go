package knative

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// What a Service's labels make of it: the min-scale while warm, its GPUs,
// and a label that cannot be used, said by name and value.
func TestServiceLabels(t *testing.T) {
	for _, tt := range []struct {
		labels  map[string]string
		warm    int64
		gpus    int64
		gpuType string
		bad     string // in badLabel; "" for none
	}{
		{labels: map[string]string{LabelOrg: "acme", LabelGPUs: "1", LabelGPUType: "nvidia-l4"}, warm: 1, gpus: 1, gpuType: "nvidia-l4"},
		{labels: map[string]string{LabelOrg: "acme", LabelGPUType: "L4 GPU"}, warm: 1, bad: `label orgscaler.io/gpu-type="L4 GPU" is not a GPU type`},
		{labels: map[string]string{LabelOrg: "acme"}, warm: 1},
		{labels: map[string]string{LabelOrg: "acme", LabelWarmMinScale: "3", LabelGPUs: "2"}, warm: 3, gpus: 2},
		{labels: map[string]string{LabelOrg: "acme!"}, warm: 1, bad: `label orgscaler.io/org="acme!" is not an org id: expected`},
		{labels: map[string]string{LabelOrg: "acme", LabelWarmMinScale: "0"}, warm: 1, bad: `label orgscaler.io/warm-min-scale="0" is not a whole number of at least 1`},
		{labels: map[string]string{LabelOrg: "acme", LabelGPUs: "two"}, warm: 1, bad: `label orgscaler.io/gpus="two" is not a whole number of GPUs from 0 to 1024`},
	} {
		u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"latestReadyRevisionName": "svc-00002"}}}
		u.SetLabels(tt.labels)
		stripped, err := strip(u) // as the informer keeps it
		if err != nil {
			t.Fatal(err)
		}
		s := serviceOf(stripped.(*unstructured.Unstructured))
		if s.warm != tt.warm || s.gpus != tt.gpus || s.gpuType != tt.gpuType || s.latest != "svc-00002" {
			t.Errorf("%v: warm %d gpus %d latest %q, want %d %d svc-00002", tt.labels, s.warm, s.gpus, s.latest, tt.warm, tt.gpus)
		}
		if (tt.bad == "") != (s.badLabel == "") || !strings.Contains(s.badLabel, tt.bad) {
			t.Errorf("%v: refused with %q, want %q", tt.labels, s.badLabel, tt.bad)
		}
	}
}

// The informers keep a few fields of each object, not the whole of it.
func TestStripKeepsWhatIsRead(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
		"metadata": map[string]any{"name": "svc-00001", "namespace": "ml",
			"labels":      map[string]any{labelService: "svc", "team": "web"},
			"annotations": map[string]any{AnnotationMin: "1", "kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)}},
		"spec": map[string]any{"containers": []any{map[string]any{"image": "app"}}},
	}}
	out, err := strip(u)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*unstructured.Unstructured)
	if s.GetLabels()[labelService] != "svc" || s.GetAnnotations()[AnnotationMin] != "1" || s.GetName() != "svc-00001" {
		t.Errorf("stripped away what is read: %v", s.Object)
	}
	if len(s.GetLabels()) != 1 || len(s.GetAnnotations()) != 1 || s.Object["spec"] != nil {
		t.Errorf("kept more than what is read: %v", s.Object)
	}
}
