package version

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A release's -ldflags win over what the toolchain recorded, and the
// metric carries the same identity as --version.
func TestReleaseVersionWins(t *testing.T) {
	Version, Revision = "v9.8.7", "0123456789abcdef0123"
	t.Cleanup(func() { Version, Revision = "", "" })
	i := Get()
	if i.Version != "v9.8.7" || i.Revision != "0123456789abcdef0123" {
		t.Fatalf("Get() = %+v; want the -ldflags values", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "v9.8.7 (revision 0123456789ab") || !strings.Contains(s, "go1.") {
		t.Fatalf("String() = %q", s)
	}
	reg := prometheus.NewRegistry()
	i.Register(reg)
	want := `
# HELP orgscaler_build_info Always 1; its labels say which build this replica runs: version, VCS revision, Go version.
# TYPE orgscaler_build_info gauge
orgscaler_build_info{goversion="` + i.GoVersion + `",revision="0123456789abcdef0123` + map[bool]string{true: "+modified"}[i.Modified] + `",version="v9.8.7"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "orgscaler_build_info"); err != nil {
		t.Fatal(err)
	}
}

// A build with no release values still names itself.
func TestDevelBuild(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Revision == "" || i.GoVersion == "" {
		t.Fatalf("Get() = %+v; want every field named", i)
	}
}
