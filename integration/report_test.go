package integration

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	kedapb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/orgscaler/orgscaler/internal/clocktest"
	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
)

// Three hours of KEDA polling every minute, with time under control: the
// pynode is warm for its 1h window after each activity, the 4-GPU model for
// its 30m warmFor. The report and /metrics give the figures those answers
// imply, and they survive a restart.
func TestReportFromAnswers(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	clock := clocktest.New(t0)
	dir := t.TempDir()
	o := options(t, dir)
	o.Now, o.IdleWindow = clock.Now, time.Hour
	d := start(t, o)
	model := &kedapb.ScaledObjectRef{Namespace: "orgs", Name: "model-acme",
		ScalerMetadata: map[string]string{"workload": "model", "org": "acme", "warmFor": "30m", "gpusPerReplica": "4", "gpuType": "a100"}}
	for m := 0; m <= 180; m++ {
		clock.Set(t0.Add(time.Duration(m) * time.Minute))
		if m == 120 {
			if _, err := d.act.RecordActivity(context.Background(), &pb.RecordActivityRequest{Org: "acme"}); err != nil {
				t.Fatal(err)
			}
		}
		answer(t, d, pynode("acme"))
		answer(t, d, model)
	}
	r, err := d.orgs.Report(context.Background(), &pb.ReportRequest{Since: durationOf(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*pb.WorkloadUsage{}
	for _, w := range r.GetWorkloads() {
		byName[w.GetScaledObject()] = w
	}
	p, m := byName["orgs/pynode-acme"], byName["orgs/model-acme"]
	if p.GetTracked().AsDuration() != 3*time.Hour || p.GetActive().AsDuration() != 2*time.Hour || p.GetReplicaHours() != 2 ||
		p.GetAlwaysOnReplicaHours() != 3 || p.GetGpuHours() != 0 || p.GetGpusPerReplica() != 0 || p.GetWakes()["activity"] != 1 {
		t.Errorf("pynode: %v", p)
	}
	if m.GetActive().AsDuration() != time.Hour || m.GetGpusPerReplica() != 4 || m.GetGpuHours() != 4 || m.GetAlwaysOnGpuHours() != 12 ||
		m.GetWakes()["activity"] != 1 || m.GetOrg() != "acme" || m.GetKind() != "model" || m.GetGpuType() != "a100" {
		t.Errorf("model: %v", m)
	}

	// A pynode holds no GPU unless its trigger says so; the model's a100
	// hours are priced as a100s.
	out, err := d.ctl(t, "report", "--since", "4h", "--gpu-hour-price", "a100=2.50,l4=0.70")
	if err != nil {
		t.Fatal(err)
	}
	// Compared field by field, whatever the column widths.
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"GPU-hours from 2026-11-25 05:00 UTC to 2026-11-25 09:00 UTC (hourly figures are kept for 31d)",
		"acme orgs/model-acme model 4xa100 1h00m activity:1 1.00 3.00 8.00 20.00", // 8 GPU-hours saved, at $2.50
		"acme orgs/pynode-acme pynode 0 2h00m activity:1 2.00 3.00 0.00 0.00",
		"acme (org total) 8.00 20.00",
		"always-on (minReplicaCount 1) 12.00 100% 30.00",
		"scale-to-zero (as answered) 4.00 33% 10.00",
		"Wakes: 2 cold activations (demand that found the workload down: activity 2, hint 0, backlog 0); 0 ahead of demand (pre-warm 0, schedule 0, admin 0)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scalerctl report should show %q:\n%s", want, out)
		}
	}
	gpu := regexp.MustCompile(`orgscaler_usage_gpu_seconds_total\{gpu_type="a100",kind="model",metric="model-acme-[0-9a-f]{8}",org="acme",scaled_object="orgs/model-acme"\} 14400\n`)
	if !gpu.MatchString(scrape(t, d)) {
		t.Error("/metrics should carry the model's 4 GPU-hours as 14400 GPU-seconds")
	}

	d.stop(t)
	d = start(t, o)
	r2, err := d.orgs.Report(context.Background(), &pb.ReportRequest{Since: durationOf(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.GetWorkloads()) != 2 || r2.GetWorkloads()[0].GetGpuHours()+r2.GetWorkloads()[1].GetGpuHours() != 4 || r2.GetWorkloads()[0].GetGpuType() != "a100" {
		t.Errorf("after a restart the report should be the same: %v", r2)
	}
	if _, err := d.ctl(t, "report", "--since", "soon"); err == nil || !strings.Contains(err.Error(), `--since is "soon"`) {
		t.Errorf("a bad --since should be named: %v", err)
	}
}

// A learned model of an org used every 30 minutes: once the policy has
// learned the pattern, the model is let go between uses and pre-warmed
// before each, and the report counts those pre-warms apart from the cold
// activations.
func TestReportCountsPrewarms(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	clock := clocktest.New(t0)
	o := options(t, t.TempDir())
	o.Now = clock.Now
	d := start(t, o)
	model := &kedapb.ScaledObjectRef{Namespace: "orgs", Name: "model-acme",
		ScalerMetadata: map[string]string{"workload": "model", "org": "acme", "keepAlive": "learned", "coldStart": "3m"}}
	for m := 0; m <= 240; m++ {
		clock.Set(t0.Add(time.Duration(m) * time.Minute))
		if m%30 == 0 {
			if _, err := d.act.RecordActivity(context.Background(), &pb.RecordActivityRequest{Org: "acme"}); err != nil {
				t.Fatal(err)
			}
		}
		answer(t, d, model)
	}
	r, err := d.orgs.Report(context.Background(), &pb.ReportRequest{Since: durationOf(5 * time.Hour)})
	if err != nil || len(r.GetWorkloads()) != 1 {
		t.Fatalf("report: %v %v", r, err)
	}
	w := r.GetWorkloads()[0]
	t.Logf("wakes %v, active %s of %s", w.GetWakes(), w.GetActive().AsDuration(), w.GetTracked().AsDuration())
	// The first use finds it warm (a new org is active), the first gaps
	// are kept up while little is known, then each use is pre-warmed.
	if w.GetWakes()["pre-warm"] != 7 || w.GetWakes()["activity"] != 0 || w.GetActive().AsDuration() != 100*time.Minute {
		t.Fatalf("wakes %v, active %s: want pre-warms before the uses, and the model let go between them", w.GetWakes(), w.GetActive().AsDuration())
	}
	out, err := d.ctl(t, "report", "--since", "5h")
	if err != nil || !strings.Contains(out, "0 cold activations") || !strings.Contains(out, "7 ahead of demand (pre-warm 7,") {
		t.Fatalf("scalerctl report: %v\n%s", err, out)
	}

	// The same day replayed from the scaler's own history: nine active
	// minutes, and the replay's learned policy bills less than a 1 h window.
	out, err = d.ctl(t, "replay", "--from-scaler", "--day", "2026-11-25", "--policy", "fixed:1h,learned", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Orgs          int `json:"orgs"`
		ActiveMinutes int `json:"active_minutes"`
		Policies      []struct {
			Policy   string  `json:"policy"`
			GPUHours float64 `json:"gpu_hours"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Orgs != 1 || rep.ActiveMinutes != 9 || len(rep.Policies) != 2 ||
		rep.Policies[1].GPUHours >= rep.Policies[0].GPUHours {
		t.Fatalf("replay --from-scaler: %+v %v\n%s", rep, err, out)
	}
	if _, err := d.ctl(t, "replay", "--from-scaler", "--day", "2026-11-20"); err == nil || !strings.Contains(err.Error(), "no activity for that day") {
		t.Fatalf("a day with no history: %v", err)
	}
}
