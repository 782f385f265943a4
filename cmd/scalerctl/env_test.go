package main

import (
	"strings"
	"testing"
)

// Flags read their environment variables as the scaler's do: SCALERCTL_
// and the name; a flag on the command line wins.
func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("SCALERCTL_COLD_START", "30s")
	var out, errs strings.Builder
	if code := run([]string{"replay", halfA}, &out, &errs); code == 0 || !strings.Contains(errs.String(), "--cold-start is 30s") {
		t.Fatalf("SCALERCTL_COLD_START ignored: exit %d, %q", code, errs.String())
	}
	out.Reset()
	errs.Reset()
	if code := run([]string{"replay", halfA, "--cold-start", "3m", "--policy", "limit", "-o", "json"}, &out, &errs); code != 0 {
		t.Fatalf("a flag must win over its variable: exit %d, %q", code, errs.String())
	}
	t.Setenv("SCALERCTL_OUTPUT", "yaml")
	errs.Reset()
	if code := run([]string{"replay", halfA}, &out, &errs); code == 0 || !strings.Contains(errs.String(), `-o is "yaml"`) {
		t.Fatalf("SCALERCTL_OUTPUT: exit %d, %q", code, errs.String())
	}
}

// --version prints the build's identity and calls no scaler.
func TestVersion(t *testing.T) {
	var out, errs strings.Builder
	if code := run([]string{"--version"}, &out, &errs); code != 0 || !strings.HasPrefix(out.String(), "scalerctl ") || !strings.Contains(out.String(), "revision") {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", code, out.String(), errs.String())
	}
}
