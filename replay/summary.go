package replay

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// Summary is a replay's figures as `scalerctl replay -o json` prints them.
type Summary struct {
	Orgs             int            `json:"orgs"`
	ActiveMinutes    int            `json:"active_minutes"`
	ColdStartMinutes int            `json:"cold_start_minutes"`
	Policies         []PolicyFigure `json:"policies"`
}

// PolicyFigure is one policy's row.
type PolicyFigure struct {
	Policy        string  `json:"policy"`
	ColdPct       float64 `json:"cold_pct"`
	P75OrgColdPct float64 `json:"p75_org_cold_pct"`
	GPUHours      float64 `json:"gpu_hours"`
	// VsFixed10m is GPU-hours as a percentage of fixed:10m's.
	VsFixed10m float64 `json:"gpu_hours_vs_fixed_10m_pct"`
}

// Summarize puts results side by side; base is fixed:10m's, which every
// row's GPU-hours are compared with.
func Summarize(t *Trace, coldStart int, base Result, results []Result) Summary {
	s := Summary{Orgs: len(t.Orgs), ActiveMinutes: base.ActiveMinutes, ColdStartMinutes: coldStart}
	for _, r := range results {
		f := PolicyFigure{Policy: r.Policy, ColdPct: round(r.ColdPct(), 2), P75OrgColdPct: round(r.P75OrgColdPct(), 2), GPUHours: round(r.GPUHours(), 1)}
		if base.BilledMinutes > 0 {
			f.VsFixed10m = round(100*float64(r.BilledMinutes)/float64(base.BilledMinutes), 1)
		}
		s.Policies = append(s.Policies, f)
	}
	return s
}

// round rounds half to even, as most tools print (4475.25 is 4475.2).
func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.RoundToEven(v*p) / p
}

// WriteTable prints s for people.
func (s Summary) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%d orgs, %d active minutes, cold start %d min\n\n", s.Orgs, s.ActiveMinutes, s.ColdStartMinutes)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tcold %\tp75 org cold %\tGPU-hours\tvs fixed:10m\t")
	for _, p := range s.Policies {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.1f\t%.1f%%\t\n", p.Policy, p.ColdPct, p.P75OrgColdPct, p.GPUHours, p.VsFixed10m)
	}
	return tw.Flush()
}
