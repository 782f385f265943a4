package trigger

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's trigger metadata reference lists exactly the keys the
// parser reads: a new key cannot be left out of it, nor a removed one
// linger.
func TestREADMEListsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "## Trigger metadata reference")
	end := strings.Index(text[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README has no trigger metadata reference section")
	}
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\|").FindAllStringSubmatch(text[start:start+1+end], -1) {
		listed = append(listed, m[1])
	}
	want := slices.Sorted(slices.Values(Keys))
	if slices.Sort(listed); !slices.Equal(listed, want) {
		t.Fatalf("README lists %v; the parser reads %v", listed, want)
	}
}

// A pynode holds no GPU unless its trigger says so; a worker or a model
// holds one; gpuType is checked and kept.
func TestGPUDefaults(t *testing.T) {
	for md, want := range map[string]int64{"workload=pynode,org=a": 0, "workload=model,org=a": 1, "workload=pynode,org=a,gpusPerReplica=2": 2} {
		m := map[string]string{}
		for _, kv := range strings.Split(md, ",") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		w, err := ParseMetadata(m)
		if err != nil || w.GPUsPerReplica != want {
			t.Errorf("%s: %d GPUs, %v; want %d", md, w.GPUsPerReplica, err, want)
		}
	}
	w, err := ParseMetadata(map[string]string{"workload": "model", "org": "a", "gpuType": "nvidia-l4"})
	if err != nil || w.GPUType != "nvidia-l4" {
		t.Fatalf("gpuType nvidia-l4: %+v, %v", w, err)
	}
	if _, err := ParseMetadata(map[string]string{"workload": "model", "org": "a", "gpuType": "A100 80GB"}); err == nil || !strings.Contains(err.Error(), "gpuType") {
		t.Fatalf("gpuType with spaces and capitals: %v; want refused naming gpuType", err)
	}
}
