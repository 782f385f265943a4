package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/orgscaler/orgscaler/proto/orgscaler/v1"
	"github.com/orgscaler/orgscaler/usage"
)

func (c *cli) reportCommand() *cobra.Command {
	var since string
	var price float64
	cmd := &cobra.Command{
		Use:   "report [--since 7d] [--gpu-hour-price USD]",
		Short: "GPU-hours per org and workload: used, what always-on would have used, and what scale to zero saved",
		Long: `Report sums the scaler's answers to KEDA over a recent window (whole hours),
per ScaledObject and per org:

  ACTIVE       time the workload was answered active
  WAKES        inactive-to-active changes, by cause (activity, hint, backlog, admin)
  REPLICA-H    replicas asked for x hours (GetMetrics' value; the HPA clips it
               to maxReplicaCount)
  ALWAYS-ON-H  replica-hours of the same workload kept at minReplicaCount: 1
  SAVED GPU-H  (ALWAYS-ON-H - REPLICA-H) x gpusPerReplica

and compares three plans over the window: always-on (every workload at
minReplicaCount 1), scale-to-zero (as answered), and hybrid (workers that
belong to no org, the shared pipeline, always on; the rest as answered).

Time is counted between answers, each taken to hold until the next one (at
most 10 minutes); KEDA asks about every ScaledObject each pollingInterval.`,
		Example: "  scalerctl report --since 30d --gpu-hour-price 2.50",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := parseSince(since)
			if err != nil {
				return err
			}
			if price < 0 {
				return fmt.Errorf("--gpu-hour-price is %v: expected a price >= 0", price)
			}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.ReportResponse, error) {
				return api.admin.Report(ctx, &pb.ReportRequest{Since: durationpb.New(d)})
			}, func(resp *pb.ReportResponse) error { return printReport(c.out, resp, price) })
		},
	}
	cmd.Flags().StringVar(&since, "since", "7d", "how far back: a Go duration (36h) or days (30d)")
	cmd.Flags().Float64Var(&price, "gpu-hour-price", 0, "price of one GPU-hour in USD, to price the hours saved (0: no prices)")
	return cmd
}

// parseSince takes a Go duration, or whole days as "30d".
func parseSince(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--since is %q: expected a duration greater than zero, such as 36h or 30d", s)
}

// plans sums the figures of the three deployment plans, in GPU-hours.
type plans struct{ alwaysOn, scaleToZero, hybrid float64 }

func (p *plans) add(w *pb.WorkloadUsage) {
	p.alwaysOn += w.GetAlwaysOnGpuHours()
	p.scaleToZero += w.GetGpuHours()
	if w.GetKind() == "worker" && w.GetOrg() == "" {
		p.hybrid += w.GetAlwaysOnGpuHours()
	} else {
		p.hybrid += w.GetGpuHours()
	}
}

func printReport(out io.Writer, r *pb.ReportResponse, price float64) error {
	fmt.Fprintf(out, "GPU-hours from %s to %s (hourly figures are kept for %s)\n\n",
		r.GetFrom().AsTime().UTC().Format("2006-01-02 15:04 MST"), r.GetTo().AsTime().UTC().Format("2006-01-02 15:04 MST"),
		hours(r.GetRetention().AsDuration()))
	if len(r.GetWorkloads()) == 0 {
		fmt.Fprintln(out, "No answers to KEDA in this window.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	head := "ORG\tSCALEDOBJECT\tKIND\tGPUS\tACTIVE\tWAKES\tREPLICA-H\tALWAYS-ON-H\tSAVED GPU-H\t"
	if price > 0 {
		head += "SAVED USD\t"
	}
	fmt.Fprintln(tw, head)
	var total plans
	var org plans
	orgRows := 0
	flushOrg := func(name string) {
		if orgRows > 1 {
			fmt.Fprintf(tw, "%s\t(org total)\t\t\t\t\t\t\t%.2f\t%s\n", orDash(name), org.alwaysOn-org.scaleToZero, money(price, org.alwaysOn-org.scaleToZero))
		}
		org, orgRows = plans{}, 0
	}
	ws := r.GetWorkloads()
	for i, w := range ws {
		saved := w.GetAlwaysOnGpuHours() - w.GetGpuHours()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\n", orDash(w.GetOrg()), w.GetScaledObject(), w.GetKind(),
			w.GetGpusPerReplica(), hours(w.GetActive().AsDuration()), wakes(w.GetWakes()),
			w.GetReplicaHours(), w.GetAlwaysOnReplicaHours(), saved, money(price, saved))
		total.add(w)
		org.add(w)
		orgRows++
		if i == len(ws)-1 || ws[i+1].GetOrg() != w.GetOrg() {
			flushOrg(w.GetOrg())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s\n", wakeSummary(ws))
	fmt.Fprintf(out, "Other keep-alive policies on the same activity, a UTC day at a time: scalerctl replay --from-scaler --day %s\n\n",
		r.GetTo().AsTime().UTC().Add(-24*time.Hour).Format(time.DateOnly))
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PLAN\tGPU-HOURS\tVS ALWAYS-ON\t%s\n", map[bool]string{true: "COST USD\t", false: ""}[price > 0])
	for _, p := range []struct {
		name string
		h    float64
	}{
		{"always-on (minReplicaCount 1)", total.alwaysOn},
		{"scale-to-zero (as answered)", total.scaleToZero},
		{"hybrid (shared workers on)", total.hybrid},
	} {
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\n", p.name, p.h, percent(p.h, total.alwaysOn), money(price, p.h))
	}
	return tw.Flush()
}

// hours writes a duration for people: 31d, 2d4h, 3h05m, 12m.
func hours(d time.Duration) string {
	d = d.Round(time.Minute)
	switch days, h, m := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute); {
	case days > 0 && h == 0:
		return fmt.Sprintf("%dd", days)
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	default:
		return fmt.Sprintf("%dm", m)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func money(price, hours float64) string {
	if price <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f\t", price*hours)
}

func percent(h, of float64) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*h/of)
}

// wakeSummary counts the fleet's wakes: cold activations (usage.Cause.Cold)
// against the wakes that came ahead of demand.
func wakeSummary(ws []*pb.WorkloadUsage) string {
	var cold, ahead int64
	by := map[string]int64{}
	for _, w := range ws {
		for _, c := range usage.Causes {
			n := w.GetWakes()[c.String()]
			by[c.String()] += n
			if c.Cold() {
				cold += n
			} else {
				ahead += n
			}
		}
	}
	return fmt.Sprintf("Wakes: %d cold activations (demand that found the workload down: activity %d, hint %d, backlog %d); %d ahead of demand (pre-warm %d, schedule %d, admin %d)",
		cold, by["activity"], by["hint"], by["backlog"], ahead, by["pre-warm"], by["schedule"], by["admin"])
}

// wakes lists the causes that woke a workload, e.g. "activity:3 hint:1".
func wakes(m map[string]int64) string {
	var parts []string
	for _, c := range usage.Causes {
		if n := m[c.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", c, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
