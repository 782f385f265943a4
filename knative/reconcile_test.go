package knative

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/orgscaler/orgscaler/activity"
)

func revisionObject(name, generation, minScale string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("serving.knative.dev/v1")
	u.SetKind("Revision")
	u.SetNamespace("orgs")
	u.SetName(name)
	u.SetLabels(map[string]string{labelService: "pynode", labelGeneration: generation})
	if minScale != "" {
		u.SetAnnotations(map[string]string{AnnotationMin: minScale})
	}
	return u
}

// A warm org's latest ready Revision gets its floor; an older one a
// traffic split still routes to is let go to min-scale 0; a newer one
// still starting (not yet the latest ready) is left alone, whatever its
// min-scale: it becomes the latest ready on its own.
func TestOlderRevisionsLetGoNewerLeftAlone(t *testing.T) {
	older, latest, newer := revisionObject("pynode-00001", "1", "1"), revisionObject("pynode-00002", "2", ""), revisionObject("pynode-00003", "3", "1")
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{Services: "ServiceList", Revisions: "RevisionList"}, older, latest, newer)
	a, err := New(context.Background(), Options{Dynamic: client, Org: func(string) (activity.Org, error) { return activity.Org{ID: "acme"}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	svc := &unstructured.Unstructured{}
	svc.SetNamespace("orgs")
	svc.SetName("pynode")
	svc.SetLabels(map[string]string{LabelOrg: "acme"})
	_ = unstructured.SetNestedField(svc.Object, "pynode-00002", "status", "latestReadyRevisionName")
	a.setService(svc)
	for _, r := range []*unstructured.Unstructured{older, latest, newer} {
		a.setRevision(r)
	}
	client.ClearActions()
	if _, err := a.put(context.Background(), Key{Namespace: "orgs", Name: "pynode"}); err != nil {
		t.Fatal(err)
	}
	patched := map[string]string{}
	for _, act := range client.Actions() {
		if p, ok := act.(k8stesting.PatchAction); ok {
			patched[p.GetName()] = string(p.GetPatch())
		}
	}
	if _, ok := patched["pynode-00003"]; ok {
		t.Fatalf("the newer Revision, still starting, was patched: %v", patched)
	}
	if _, ok := patched["pynode-00001"]; !ok {
		t.Fatalf("the older Revision was not let go to min-scale 0: %v", patched)
	}
	if _, ok := patched["pynode-00002"]; !ok {
		t.Fatalf("the latest ready Revision did not get its floor: %v", patched)
	}
}
