// Package helm holds what the chart's own tooling does not check: that
// its README lists every value. helm lint, helm template and the values
// it refuses run in `make lint`; the chart installed on a real API server
// runs in the e2e suite.
package helm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestREADMEListsEveryValue(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("orgscaler", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("orgscaler", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = true
	}

	// A value is listed by its own row, or (a map) by rows for each key.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		if rows[path] {
			delete(rows, path)
			if m, ok := v.(map[string]any); ok {
				for k := range m {
					delete(rows, path+"."+k) // its keys may have rows too
				}
			}
			return
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			t.Errorf("README.md has no row for the value %s", path)
			return
		}
		for k, child := range m {
			walk(strings.TrimPrefix(path+"."+k, "."), child)
		}
	}
	walk("", values)
	delete(rows, "flags.*")
	for path := range rows {
		t.Errorf("README.md lists %s, which values.yaml does not have", path)
	}
}
