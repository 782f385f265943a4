// Package version says which build of the scaler this is: the release's
// version set with -ldflags at release, or else what the Go toolchain
// recorded (the module's version when installed with `go install
// …@vX.Y.Z`, and the VCS revision of a build from a checkout). Both
// binaries print it with --version, and the scaler exports it as
// orgscaler_build_info.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version and Revision are set at release:
//
//	-ldflags "-X github.com/orgscaler/orgscaler/version.Version=v0.2.0 -X github.com/orgscaler/orgscaler/version.Revision=$(git rev-parse HEAD)"
var (
	Version  string
	Revision string
)

// Info is one build's identity.
type Info struct {
	Version   string // v0.2.0; "devel" for a build from a checkout
	Revision  string // the commit; "unknown" without VCS information
	Modified  bool   // built from a checkout with uncommitted changes
	GoVersion string
}

// Get reads this build's identity.
func Get() Info {
	i := Info{Version: Version, Revision: Revision, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Revision == "" {
					i.Revision = s.Value
				}
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	return i
}

// String is what --version prints: "scaler v0.2.0 (revision 1a2b3c4, go1.25.1)".
func (i Info) String() string {
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if i.Modified {
		rev += "+modified"
	}
	return fmt.Sprintf("%s (revision %s, %s)", i.Version, rev, i.GoVersion)
}

// Register exports i as orgscaler_build_info{version,revision,goversion}
// = 1, so a dashboard or an alert can tell which build each replica runs.
func (i Info) Register(reg prometheus.Registerer) {
	rev := i.Revision
	if i.Modified {
		rev += "+modified"
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "orgscaler_build_info",
		Help:        "Always 1; its labels say which build this replica runs: version, VCS revision, Go version.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": rev, "goversion": i.GoVersion},
	}, func() float64 { return 1 }))
}
