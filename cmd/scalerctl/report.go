package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
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
	var since, price string
	cmd := &cobra.Command{
		Use:   "report [--since 7d] [--gpu-hour-price USD | TYPE=USD,...]",
		Short: "GPU-hours per org and workload: used, what always-on would have used, and what scale to zero saved",
		Long: `Report sums the scaler's answers to KEDA over a recent window (whole hours),
per ScaledObject and per org:

  ACTIVE       time the workload was answered active
  WAKES        inactive-to-active changes, by cause (activity, hint, backlog, admin)
  REPLICA-H    replicas asked for x hours (GetMetrics' value; the HPA clips it
               to maxReplicaCount)
  ALWAYS-ON-H  replica-hours of the same workload kept at minReplicaCount: 1
  SAVED GPU-H  (ALWAYS-ON-H - REPLICA-H) x gpusPerReplica

GPUS is gpusPerReplica and the trigger's gpuType (2xa100); a pynode holds
none unless its trigger says so. --gpu-hour-price prices the hours: one
price for every GPU type (2.50), or one per type (a100=3.67,l4=0.71, with
*=PRICE for the types not named); hours of a type with no price are left
unpriced, and named.

and compares three plans over the window: always-on (every workload at
minReplicaCount 1), scale-to-zero (as answered), and hybrid (workers that
belong to no org, the shared pipeline, always on; the rest as answered).

Time is counted between answers, each taken to hold until the next one (at
most 10 minutes); KEDA asks about every ScaledObject each pollingInterval.`,
		Example: "  scalerctl report --since 30d --gpu-hour-price 2.50\n  scalerctl report --gpu-hour-price a100=3.67,l4=0.71,*=1.20",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := parseSince(since)
			if err != nil {
				return err
			}
			prices, err := parsePrices(price)
			if err != nil {
				return err
			}
			return call(c, cmd, func(ctx context.Context, api api) (*pb.ReportResponse, error) {
				return api.admin.Report(ctx, &pb.ReportRequest{Since: durationpb.New(d)})
			}, func(resp *pb.ReportResponse) error { return printReport(c.out, resp, prices) })
		},
	}
	cmd.Flags().StringVar(&since, "since", "7d", "how far back: a Go duration (36h) or days (30d)")
	cmd.Flags().StringVar(&price, "gpu-hour-price", "", "price of one GPU-hour in USD: one for every type (2.50), or per gpuType (a100=3.67,l4=0.71,*=1.20); empty: no prices")
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

// prices are USD per GPU-hour by gpuType; "*" prices the types not named
// (and workloads that name none). Empty: no prices.
type prices map[string]float64

// parsePrices reads --gpu-hour-price: "2.50", or "a100=3.67,l4=0.71[,*=1.20]".
func parsePrices(s string) (prices, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	bad := func(what string) error {
		return fmt.Errorf("--gpu-hour-price is %q: %s; expected a price (2.50) or TYPE=PRICE pairs (a100=3.67,l4=0.71,*=1.20)", s, what)
	}
	if v, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		switch {
		case v < 0:
			return nil, bad("a negative price")
		case v == 0:
			return nil, nil // as before: 0 is no prices
		}
		return prices{"*": v}, nil
	}
	p := prices{}
	for _, pair := range strings.Split(s, ",") {
		t, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || t == "" {
			return nil, bad(fmt.Sprintf("%q is not TYPE=PRICE", pair))
		}
		if _, dup := p[t]; dup {
			return nil, bad(fmt.Sprintf("type %s is priced twice", t))
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 {
			return nil, bad(fmt.Sprintf("the price of %s, %q, is not a number >= 0", t, v))
		}
		p[t] = n
	}
	return p, nil
}

// of is the price of a GPU-hour of w's type, and whether there is one.
func (p prices) of(w *pb.WorkloadUsage) (float64, bool) {
	if v, ok := p[w.GetGpuType()]; ok && w.GetGpuType() != "" {
		return v, true
	}
	v, ok := p["*"]
	return v, ok
}

// cell is hours of w priced, as a table cell ("" without prices, "-"
// for a type with no price).
func (p prices) cell(w *pb.WorkloadUsage, hours float64) string {
	if len(p) == 0 {
		return ""
	}
	v, ok := p.of(w)
	if !ok && hours != 0 {
		return "-\t"
	}
	return fmt.Sprintf("%.2f\t", v*hours)
}

// plans sums the three deployment plans, in GPU-hours and, where priced,
// in USD.
type plans struct{ alwaysOn, scaleToZero, hybrid, alwaysOnUSD, scaleToZeroUSD, hybridUSD float64 }

func (pl *plans) add(w *pb.WorkloadUsage, p prices) {
	price, _ := p.of(w)
	hybrid := w.GetGpuHours()
	if w.GetKind() == "worker" && w.GetOrg() == "" {
		hybrid = w.GetAlwaysOnGpuHours()
	}
	pl.alwaysOn += w.GetAlwaysOnGpuHours()
	pl.scaleToZero += w.GetGpuHours()
	pl.hybrid += hybrid
	pl.alwaysOnUSD += price * w.GetAlwaysOnGpuHours()
	pl.scaleToZeroUSD += price * w.GetGpuHours()
	pl.hybridUSD += price * hybrid
}

// gpus is a workload's GPUs per replica and their type: 2xa100.
func gpus(w *pb.WorkloadUsage) string {
	if w.GetGpuType() == "" {
		return strconv.FormatInt(w.GetGpusPerReplica(), 10)
	}
	return fmt.Sprintf("%dx%s", w.GetGpusPerReplica(), w.GetGpuType())
}

func printReport(out io.Writer, r *pb.ReportResponse, p prices) error {
	fmt.Fprintf(out, "GPU-hours from %s to %s (hourly figures are kept for %s)\n\n",
		r.GetFrom().AsTime().UTC().Format("2006-01-02 15:04 MST"), r.GetTo().AsTime().UTC().Format("2006-01-02 15:04 MST"),
		hours(r.GetRetention().AsDuration()))
	if len(r.GetWorkloads()) == 0 {
		fmt.Fprintln(out, "No answers to KEDA in this window.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	head := "ORG\tSCALEDOBJECT\tKIND\tGPUS\tACTIVE\tWAKES\tREPLICA-H\tALWAYS-ON-H\tSAVED GPU-H\t"
	if len(p) > 0 {
		head += "SAVED USD\t"
	}
	fmt.Fprintln(tw, head)
	var total plans
	var org plans
	orgRows := 0
	unpriced := map[string]bool{}
	flushOrg := func(name string) {
		if orgRows > 1 {
			fmt.Fprintf(tw, "%s\t(org total)\t\t\t\t\t\t\t%.2f\t%s\n", orDash(name), org.alwaysOn-org.scaleToZero, money(p, org.alwaysOnUSD-org.scaleToZeroUSD))
		}
		org, orgRows = plans{}, 0
	}
	ws := r.GetWorkloads()
	for i, w := range ws {
		saved := w.GetAlwaysOnGpuHours() - w.GetGpuHours()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\n", orDash(w.GetOrg()), w.GetScaledObject(), w.GetKind(),
			gpus(w), hours(w.GetActive().AsDuration()), wakes(w.GetWakes()),
			w.GetReplicaHours(), w.GetAlwaysOnReplicaHours(), saved, p.cell(w, saved))
		if _, ok := p.of(w); len(p) > 0 && !ok && w.GetGpuHours()+w.GetAlwaysOnGpuHours() > 0 {
			unpriced[orDash(w.GetGpuType())] = true
		}
		total.add(w, p)
		org.add(w, p)
		orgRows++
		if i == len(ws)-1 || ws[i+1].GetOrg() != w.GetOrg() {
			flushOrg(w.GetOrg())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(unpriced) > 0 {
		fmt.Fprintf(out, "\nNo price for GPU type %s: their hours are left out of the USD figures (add TYPE=PRICE, or *=PRICE, to --gpu-hour-price).\n",
			strings.Join(slices.Sorted(maps.Keys(unpriced)), ", "))
	}
	fmt.Fprintf(out, "\n%s\n", wakeSummary(ws))
	fmt.Fprintf(out, "Other keep-alive policies on the same activity, a UTC day at a time: scalerctl replay --from-scaler --day %s\n\n",
		r.GetTo().AsTime().UTC().Add(-24*time.Hour).Format(time.DateOnly))
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PLAN\tGPU-HOURS\tVS ALWAYS-ON\t%s\n", map[bool]string{true: "COST USD\t", false: ""}[len(p) > 0])
	for _, pl := range []struct {
		name   string
		h, usd float64
	}{
		{"always-on (minReplicaCount 1)", total.alwaysOn, total.alwaysOnUSD},
		{"scale-to-zero (as answered)", total.scaleToZero, total.scaleToZeroUSD},
		{"hybrid (shared workers on)", total.hybrid, total.hybridUSD},
	} {
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\n", pl.name, pl.h, percent(pl.h, total.alwaysOn), money(p, pl.usd))
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

// money is a USD figure as a table cell ("" without prices).
func money(p prices, usd float64) string {
	if len(p) == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f\t", usd)
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
