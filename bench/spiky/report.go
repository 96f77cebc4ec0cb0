package spiky

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Markdown writes the comparison table of the two policies.
func Markdown(w io.Writer, cfg Config, shared, baseline Result) {
	fmt.Fprintf(w, "Trace: %v simulated, peak every %v, %.0f new sessions/s at peak, %.0fx swing, mean lifetime %v, %d players/session; "+
		"%d sessions/server, allocation lead time %v, drain grace %v, seed %d.\n\n",
		cfg.Duration, cfg.Period, cfg.PeakRate, cfg.Swing, cfg.MeanLifetime, cfg.Members, cfg.Capacity, cfg.LeadTime, cfg.DrainGrace, cfg.Seed)
	fmt.Fprintln(w, "| policy | sessions | peak demand | peak servers | server-hours | avg idle capacity | rejected | p50 placement | p99 placement | drains | moves | wall |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range []Result{shared, baseline} {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.1f | %.1f %% | %d | %v | %v | %d | %d | %v |\n",
			r.Policy, r.Sessions, r.PeakDemand, r.PeakServers, r.ServerSeconds/3600, 100*r.AvgIdle, r.Rejected,
			r.P50.Round(time.Microsecond/10), r.P99.Round(time.Microsecond/10), r.Drains, r.Moves, r.Wall.Round(time.Millisecond))
	}
	if shared.PeakServers > 0 {
		fmt.Fprintf(w, "\nPeak servers: %.1fx fewer than one session per server; server-hours: %.1fx fewer.\n",
			float64(baseline.PeakServers)/float64(shared.PeakServers), baseline.ServerSeconds/max(1, shared.ServerSeconds))
	}
}

// SVG writes a plot of demand and capacity over time for the shared policy.
func SVG(w io.Writer, r Result) {
	const (
		width, height = 900.0, 360.0
		left, right   = 60.0, 20.0
		top, bottom   = 30.0, 40.0
	)
	maxY := 1
	for _, s := range r.Series {
		maxY = max(maxY, s.Capacity, s.Demand)
	}
	n := max(1, len(r.Series)-1)
	x := func(i int) float64 { return left + (width-left-right)*float64(i)/float64(n) }
	y := func(v int) float64 { return height - bottom - (height-top-bottom)*float64(v)/float64(maxY) }
	line := func(val func(Sample) int) string {
		var b strings.Builder
		step := max(1, len(r.Series)/1500) // keep the file small
		for i := 0; i < len(r.Series); i += step {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(val(r.Series[i])))
		}
		return b.String()
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%.0f" y="18">%s: session slots (capacity) vs sessions (demand)</text>`+"\n", left, r.Policy)
	fmt.Fprintf(w, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, height-bottom, width-right, height-bottom)
	fmt.Fprintf(w, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, height-bottom)
	for i := 0; i <= 4; i++ {
		v := maxY * i / 4
		fmt.Fprintf(w, `<text x="%.0f" y="%.1f" text-anchor="end">%d</text>`+"\n", left-5, y(v)+4, v)
	}
	if len(r.Series) > 0 {
		end := r.Series[len(r.Series)-1].T
		for i := 0; i <= 4; i++ {
			fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">%v</text>`+"\n", x(n*i/4), height-bottom+18, (end * time.Duration(i) / 4).Round(time.Minute))
		}
	}
	fmt.Fprintf(w, `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%s"/>`+"\n", line(func(s Sample) int { return s.Capacity }))
	fmt.Fprintf(w, `<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="%s"/>`+"\n", line(func(s Sample) int { return s.Demand }))
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#1f77b4">capacity (slots on live servers)</text>`+"\n", width-300, top+5)
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#d62728">demand (live + waiting sessions)</text>`+"\n", width-300, top+20)
	fmt.Fprintln(w, "</svg>")
}

// WriteFiles writes spiky.md and spiky.svg into dir.
func WriteFiles(dir string, cfg Config, shared, baseline Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("spiky: create %s: %w", dir, err)
	}
	var md strings.Builder
	Markdown(&md, cfg, shared, baseline)
	md.WriteString("\n![capacity vs demand](spiky.svg)\n")
	if err := os.WriteFile(filepath.Join(dir, "spiky.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("spiky: write report: %w", err)
	}
	var svg strings.Builder
	SVG(&svg, shared)
	if err := os.WriteFile(filepath.Join(dir, "spiky.svg"), []byte(svg.String()), 0o644); err != nil {
		return fmt.Errorf("spiky: write plot: %w", err)
	}
	return nil
}
