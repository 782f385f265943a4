package flagenv

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// A flag on the command line wins; an unset one takes its environment
// variable; a bad variable is an error naming it; Usage groups the flags.
func TestApplyAndUsage(t *testing.T) {
	t.Setenv("TOOL_IDLE_WINDOW", "2h")
	t.Setenv("TOOL_ADDR", "from-env:1")
	fs := pflag.NewFlagSet("tool", pflag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1", "where")
	window := fs.Duration("idle-window", time.Hour, "how long")
	on := fs.Bool("on", false, "whether")
	if err := fs.Parse([]string{"--addr", "flag:2"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, "TOOL"); err != nil {
		t.Fatal(err)
	}
	if *addr != "flag:2" || *window != 2*time.Hour || *on {
		t.Fatalf("addr %q window %s on %v: want the flag, the variable, the default", *addr, *window, *on)
	}
	t.Setenv("TOOL_ON", "maybe")
	if err := Apply(fs, "TOOL"); err == nil || !strings.Contains(err.Error(), `TOOL_ON="maybe"`) {
		t.Fatalf("a bad variable: %v", err)
	}
	t.Setenv("TOOL_ON", "")
	t.Setenv("TOOL_ADDR", "")
	fresh := pflag.NewFlagSet("tool", pflag.ContinueOnError)
	empty := fresh.String("addr", "127.0.0.1:1", "where")
	change := fresh.Duration("idle-window", time.Hour, "a change asked for")
	NoEnv(fresh, "idle-window")
	if err := Apply(fresh, "TOOL"); err != nil || *empty != "" || *change != time.Hour || fresh.Lookup("idle-window").Changed {
		t.Fatalf("an empty variable must set the flag to empty (%q, %v), and a NoEnv flag keep its default (%s)", *empty, err, *change)
	}
	Group(fs, "Where", "addr")
	var out strings.Builder
	Usage(&out, fs, "TOOL", []string{"Where"})
	if got := out.String(); !strings.Contains(got, "\nWhere:\n  --addr (env TOOL_ADDR, default 127.0.0.1:1)") || !strings.Contains(got, "\nOther:\n") {
		t.Fatalf("usage:\n%s", got)
	}
}
