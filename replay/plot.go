package replay

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"slices"
	"strings"
)

// WriteSVG draws s: GPU-hours across, cold % up, a point per policy, and
// the learned policy's prices joined into its frontier. Lower and to the
// left is better on both.
func (s Summary) WriteSVG(w io.Writer) error {
	const width, height, left, bottom, top, right = 760.0, 460.0, 70.0, 50.0, 30.0, 150.0
	maxX, maxY := 0.0, 0.0
	for _, p := range s.Policies {
		maxX, maxY = max(maxX, p.GPUHours), max(maxY, p.ColdPct)
	}
	maxX, maxY = maxX*1.05, maxY*1.1
	if maxX == 0 || maxY == 0 {
		maxX, maxY = max(maxX, 1), max(maxY, 1)
	}
	x := func(v float64) float64 { return left + v/maxX*(width-left-right) }
	y := func(v float64) float64 { return height - bottom - v/maxY*(height-bottom-top) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">%d orgs, cold start %d min: cold activations against GPU-hours (lower left is better)</text>`+"\n", left, s.Orgs, s.ColdStartMinutes)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x(0), y(0), x(maxX), y(0))
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x(0), y(0), x(0), y(maxY))
	for i := 0; i <= 5; i++ {
		vx, vy := maxX*float64(i)/5, maxY*float64(i)/5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", x(vx), y(0)+16, vx)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.1f</text>`+"\n", x(0)-6, y(vy)+4, vy)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">GPU-hours billed</text>`+"\n", x(maxX/2), height-12)
	fmt.Fprintf(&b, `<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">cold activations, %% of active minutes</text>`+"\n", y(maxY/2), y(maxY/2))
	var frontier []PolicyFigure
	for _, p := range s.Policies {
		if strings.HasPrefix(p.Policy, "learned") {
			frontier = append(frontier, p)
		}
	}
	slices.SortFunc(frontier, func(a, b PolicyFigure) int { return cmp.Compare(a.GPUHours, b.GPUHours) })
	if len(frontier) > 1 {
		var pts []string
		for _, p := range frontier {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.GPUHours), y(p.ColdPct)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`+"\n", strings.Join(pts, " "))
	}
	for _, p := range s.Policies {
		color := "#d62728"
		if strings.HasPrefix(p.Policy, "learned") {
			color = "#1f77b4"
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", x(p.GPUHours), y(p.ColdPct), color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s (p75 %.0f%%)</text>`+"\n", x(p.GPUHours)+6, y(p.ColdPct)-6, html.EscapeString(p.Policy), p.P75OrgColdPct)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
