package spiky

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kumi-dev/kumi/director/pool"
	"github.com/kumi-dev/kumi/internal/config"
)

// Markdown writes the comparison table of the two policies, then the pool settings of the run
// next to directorDefaults (the director's own pool defaults, which the bench's Default differs
// from). It depends only on its arguments: the same settings and seed give the same bytes.
func Markdown(w io.Writer, cfg Config, directorDefaults pool.Config, shared, baseline Result) {
	fmt.Fprintf(w, "Trace: %v simulated, peak every %v, %.0f new sessions/s at peak, %.0fx swing, mean lifetime %v, %d players/session; "+
		"%d sessions/server, allocation lead time %v, drain grace %v, seed %d.\n\n",
		cfg.Duration, cfg.Period, cfg.PeakRate, cfg.Swing, cfg.MeanLifetime, cfg.Members, cfg.Capacity, cfg.LeadTime, cfg.DrainGrace, cfg.Seed)
	fmt.Fprintln(w, "| policy | sessions | peak demand | peak servers | server-hours | avg idle capacity | rejected | p50 wait for a slot | p99 wait for a slot | drains | moves |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range []Result{shared, baseline} {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.1f | %.1f %% | %d | %v | %v | %d | %d |\n",
			r.Policy, r.Sessions, r.PeakDemand, r.PeakServers, r.ServerSeconds/3600, 100*r.AvgIdle, r.Rejected,
			r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Drains, r.Moves)
	}
	if shared.PeakServers > 0 {
		fmt.Fprintf(w, "\nPeak servers: %.1fx fewer than one session per server; server-hours: %.1fx fewer.\n",
			float64(baseline.PeakServers)/float64(shared.PeakServers), baseline.ServerSeconds/max(1, shared.ServerSeconds))
	}
	fmt.Fprintln(w, "\nPool settings of the shared policy (the baseline uses one session per server and a high watermark scaled down by the capacity):")
	fmt.Fprintln(w, "\n| setting | this run | director default |\n|---|---|---|")
	for _, row := range PoolSettings(cfg.Pool, directorDefaults) {
		mark := ""
		if row.Used != row.Default {
			mark = " (differs)"
		}
		fmt.Fprintf(w, "| `--pool-%s` | %s%s | %s |\n", row.Name, row.Used, mark, row.Default)
	}
}

// PoolSetting is one pool flag's value in a run and in the director's defaults.
type PoolSetting struct{ Name, Used, Default string }

// PoolSettings lists every pool flag (in name order) with its value in used and in defaults, as
// the flags print them, so the report and `kumi director -h` speak the same language.
func PoolSettings(used, defaults pool.Config) []PoolSetting {
	flags := func(c *pool.Config) *flag.FlagSet {
		fs := flag.NewFlagSet("pool", flag.ContinueOnError)
		if err := config.Bind(fs, "", c); err != nil {
			panic(err) // pool.Config's tags are fixed at compile time: a bad one is a programming error
		}
		return fs
	}
	def := flags(&defaults)
	var out []PoolSetting
	flags(&used).VisitAll(func(f *flag.Flag) {
		out = append(out, PoolSetting{f.Name, f.Value.String(), def.Lookup(f.Name).Value.String()})
	})
	return out
}

// SVG writes a plot of demand and capacity over time for the shared policy.
func SVG(w io.Writer, r Result) {
	const (
		width, height = 900.0, 360.0
		left, right   = 70.0, 20.0
		top, bottom   = 30.0, 50.0
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
		for i := 0; i <= 4; i++ {
			fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(n*i/4), height-bottom+18, clock(r.Series[n*i/4].T))
		}
	}
	fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">simulated time (h:mm)</text>`+"\n", left+(width-left-right)/2, height-8)
	fmt.Fprintf(w, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">sessions</text>`+"\n", top+(height-top-bottom)/2)
	fmt.Fprintf(w, `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%s"/>`+"\n", line(func(s Sample) int { return s.Capacity }))
	fmt.Fprintf(w, `<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="%s"/>`+"\n", line(func(s Sample) int { return s.Demand }))
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#1f77b4">capacity (slots on live servers)</text>`+"\n", width-300, top+5)
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#d62728">demand (live + waiting sessions)</text>`+"\n", width-300, top+20)
	fmt.Fprintln(w, "</svg>")
}

// clock formats a simulated time as h:mm (e.g. 1:30), the time axis' labels.
func clock(d time.Duration) string {
	m := int(d.Round(time.Minute) / time.Minute)
	return fmt.Sprintf("%d:%02d", m/60, m%60)
}

// WriteFiles writes spiky.md and spiky.svg into dir.
func WriteFiles(dir string, cfg Config, directorDefaults pool.Config, shared, baseline Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("spiky: create %s: %w", dir, err)
	}
	var md strings.Builder
	Markdown(&md, cfg, directorDefaults, shared, baseline)
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
