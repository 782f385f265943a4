package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/orgscaler/orgscaler/internal/flagenv"
)

func TestFlagsAndEnv(t *testing.T) {
	t.Setenv("SCALER_IDLE_WINDOW", "2h")
	t.Setenv("SCALER_LISTEN", "0.0.0.0:9999")
	var out strings.Builder
	c, err := parse([]string{"--listen", "127.0.0.1:1234", "--flush-interval=5s"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if c.app.IdleWindow != 2*time.Hour {
		t.Errorf("env SCALER_IDLE_WINDOW ignored: %s", c.app.IdleWindow)
	}
	if c.app.Listen != "127.0.0.1:1234" {
		t.Errorf("a flag must win over its env var: %s", c.app.Listen)
	}
	if c.app.FlushInterval != 5*time.Second || c.app.APIListen != "127.0.0.1:9091" || c.app.DataDir != "./data" {
		t.Errorf("defaults or flags wrong: %+v", c.app)
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--idle-window", "soon"}, nil, "idle-window"},
		{[]string{"--idle-window", "10ms"}, nil, "--idle-window is 10ms"},
		{[]string{"--log-format", "xml"}, nil, `--log-format is "xml"`},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
		{[]string{"--tls-key", "k.pem"}, nil, "--tls-cert and --tls-key go together"},
		{[]string{"--api-tls-client-ca", "ca.pem"}, nil, "--api-tls-client-ca needs --api-tls-cert"},
		{[]string{"--usage-retention", "10m"}, nil, "--usage-retention is 10m0s: expected at least 1h"},
		{nil, map[string]string{"SCALER_FLUSH_INTERVAL": "often"}, `SCALER_FLUSH_INTERVAL="often"`},
	}
	for _, tt := range tests {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		var out strings.Builder
		_, err := parse(tt.args, &out)
		if err == nil || !strings.Contains(err.Error()+out.String(), tt.want) {
			t.Errorf("%v %v: want an error with %q, got %v", tt.args, tt.env, tt.want, err)
		}
		for k := range tt.env {
			t.Setenv(k, "")
		}
	}
}

func TestHelpListsEveryFlagWithItsEnv(t *testing.T) {
	var out strings.Builder
	_, err := parse([]string{"--help"}, &out)
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("want ErrHelp, got %v", err)
	}
	for _, want := range []string{"--listen", "SCALER_LISTEN", "--api-listen", "--data-dir", "--idle-window", "--flush-interval", "--log-format", "SCALER_LOG_FORMAT",
		"--tls-client-ca", "SCALER_API_TOKENS_FILE", "--api-insecure", "--usage-retention", "SCALER_ACTIVITY_SUBSCRIPTION"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %s:\n%s", want, out.String())
		}
	}
	// By concern, in order, and no flag left out of a group.
	text := out.String()
	last := -1
	for _, g := range groups {
		i := strings.Index(text, "\n"+g+":\n")
		if i < last {
			t.Errorf("--help: group %q missing or out of order", g)
		}
		last = i
	}
	if strings.Contains(text, "\nOther:\n") {
		t.Errorf("--help has flags in no group:\n%s", text[strings.Index(text, "\nOther:\n"):])
	}
}

func TestStartFailureExitsNonZero(t *testing.T) {
	var out strings.Builder
	// The data dir is a file: the store cannot open it.
	dir := t.TempDir() + "/file"
	if err := writeFile(dir); err != nil {
		t.Fatal(err)
	}
	code := run([]string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"}, io.Discard, &out)
	if code != 1 || !strings.Contains(out.String(), "cannot start") || !strings.Contains(out.String(), dir) {
		t.Fatalf("want exit 1 and an error naming %s, got %d:\n%s", dir, code, out.String())
	}
}

// --version prints the build's identity on stdout and starts nothing,
// whatever else is given; SCALER_VERSION in the environment is ignored,
// so a variable left in a pod cannot turn the scaler into a version print.
func TestVersion(t *testing.T) {
	var out, errs strings.Builder
	if code := run([]string{"--version", "--data-dir", ""}, &out, &errs); code != 0 || !strings.HasPrefix(out.String(), "scaler ") || !strings.Contains(out.String(), "revision") {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q; want exit 0 and the version on stdout", code, out.String(), errs.String())
	}
	t.Setenv("SCALER_VERSION", "true")
	c, err := parse([]string{"--data-dir", t.TempDir()}, io.Discard)
	if err != nil || c.version {
		t.Fatalf("SCALER_VERSION=true: version %v, err %v; want it ignored", c.version, err)
	}
}

func writeFile(p string) error { return os.WriteFile(p, []byte("x"), 0o600) }

// The Helm chart passes flags as SCALER_* variables: the ones it sets
// itself (its ConfigMap) and the ones its `flags` value accepts (its
// schema). Each must be a real flag, and each flag must be one or the
// other, or be left out of the chart on purpose, so a new flag cannot be
// forgotten there and a renamed one cannot linger.
func TestChartKnowsEveryFlag(t *testing.T) {
	chart := filepath.Join("..", "..", "deploy", "helm", "orgscaler")
	var schema struct {
		Properties struct {
			Flags struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"flags"`
		} `json:"properties"`
	}
	b, err := os.ReadFile(filepath.Join(chart, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	cm, err := os.ReadFile(filepath.Join(chart, "templates", "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Not for a pod: its own namespace, pod name and in-cluster config
	// stand in for these, and an unauthenticated API is never shipped.
	outside := map[string]bool{"kubeconfig": true, "replica-id": true, "leader-elect-namespace": true, "api-insecure": true, "version": true}

	real := map[string]bool{}
	flags(new(config), io.Discard).VisitAll(func(f *pflag.Flag) { real[f.Name] = true })
	set := map[string]string{}
	for _, env := range regexp.MustCompile(`\bSCALER_[A-Z0-9_]+`).FindAllString(string(cm), -1) {
		set[env] = "the ConfigMap template"
	}
	for name := range schema.Properties.Flags.Properties {
		set[flagenv.EnvName(envPrefix, name)] = "the schema's flags"
	}
	for name := range real {
		env := flagenv.EnvName(envPrefix, name)
		if _, ok := set[env]; ok == outside[name] {
			t.Errorf("--%s: want it in exactly one of the chart's ConfigMap template, its schema's flags, or this test's list of flags left out", name)
		}
		delete(set, env)
	}
	for env, where := range set {
		t.Errorf("%s names %s, which is no flag of the scaler", where, env)
	}
}

// The README's flag table lists every flag, each with its variable, and
// nothing that is not a flag: a new flag cannot be left out of it, nor a
// removed one linger.
func TestREADMEKnowsEveryFlag(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`--([a-z0-9-]+)`")
	env := regexp.MustCompile("`(SCALER_[A-Z0-9_]+)`")
	listed := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `--") || len(cells) < 4 {
			continue
		}
		names, envs := name.FindAllStringSubmatch(cells[1], -1), env.FindAllStringSubmatch(cells[2], -1)
		for i, m := range names {
			listed[m[1]] = true
			want := flagenv.EnvName(envPrefix, m[1])
			if m[1] == "version" {
				want = ""
			}
			got := ""
			if i < len(envs) {
				got = envs[i][1]
			}
			if got != want {
				t.Errorf("README: --%s's variable is %q; want %q", m[1], got, want)
			}
		}
	}
	real := map[string]bool{}
	flags(new(config), io.Discard).VisitAll(func(f *pflag.Flag) { real[f.Name] = true })
	for f := range real {
		if !listed[f] {
			t.Errorf("--%s is a flag but not in the README's flag table", f)
		}
	}
	for f := range listed {
		if !real[f] {
			t.Errorf("the README's flag table lists --%s, which is no flag", f)
		}
	}
}
