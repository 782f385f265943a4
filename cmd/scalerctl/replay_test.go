package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/orgscaler/orgscaler/replay"
)

const halfA = "../../replay/testdata/azure-functions-2019-day1-half-a.csv.gz"

// What a user runs: the JSON of a replay, in the shape, with the
// reference figures of fixed:1h on half-a at a 3-minute cold start.
func TestReplayJSON(t *testing.T) {
	var out, errs strings.Builder
	if code := run([]string{"replay", halfA, "--policy", "fixed:1h,limit", "-o", "json"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var s replay.Summary
	if err := json.Unmarshal([]byte(out.String()), &s); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if s.Orgs != 662 || s.ColdStartMinutes != 3 || len(s.Policies) != 2 {
		t.Fatalf("summary %+v", s)
	}
	if p := s.Policies[0]; p.Policy != "fixed:1h" || p.ColdPct != 1.19 || p.P75OrgColdPct != 80 || p.GPUHours != 7432.7 || p.VsFixed10m != 136.1 {
		t.Fatalf("fixed:1h: %+v", p)
	}
}

func TestReplayRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", halfA, "--cold-start", "30s"}, "--cold-start is 30s: expected whole minutes, at least 1m"},
		{[]string{"replay", halfA, "--policy", "fixed:1h,lru"}, `--policy: policy "lru": expected fixed:DURATION, hybrid or learned[:PRICE] (or limit)`},
		{[]string{"replay", "no-such-file.csv"}, "no-such-file.csv"},
	} {
		var out, errs strings.Builder
		if code := run(c.args, &out, &errs); code == 0 || !strings.Contains(errs.String(), c.want) {
			t.Errorf("%v: exit %d, %q; want an error with %q", c.args, code, errs.String(), c.want)
		}
	}
}

// --plot draws every policy, and joins the learned prices into a line.
func TestReplayPlot(t *testing.T) {
	svg := t.TempDir() + "/frontier.svg"
	var out, errs strings.Builder
	if code := run([]string{"replay", halfA, "--policy", "fixed:1h,learned:30m,learned,hybrid", "--plot", svg}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Count(s, "<circle") != 4 || strings.Count(s, "<polyline") != 1 || !strings.Contains(s, "learned:30m (p75") || !strings.Contains(out.String(), "hybrid") {
		t.Fatalf("plot:\n%s\ntable:\n%s", s, out.String())
	}
}

// The README's replay walkthrough is what the command prints.
func TestReadmeReplayIsTrue(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "$ scalerctl replay replay/testdata/azure-functions-2019-day1-half-a.csv.gz --cold-start 3m\n"
	_, block, ok := strings.Cut(string(readme), prompt)
	if !ok {
		t.Fatalf("the README has no %q", prompt)
	}
	want, _, _ := strings.Cut(block, "```")
	var out, errs strings.Builder
	if code := run([]string{"replay", halfA, "--cold-start", "3m"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if out.String() != want {
		t.Fatalf("the README shows:\n%s\nthe command prints:\n%s", want, out.String())
	}
}
