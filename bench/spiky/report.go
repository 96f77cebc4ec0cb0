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

// Markdown writes the comparison table of the three policies, then the pool settings of the run
// next to directorDefaults (the director's own pool defaults, which the bench's Default differs
// from). It depends only on its arguments: the same settings and seed give the same bytes.
func Markdown(w io.Writer, cfg Config, directorDefaults pool.Config, res Results) {
	shared, agones, baseline := res.Shared, res.Agones, res.Baseline
	fmt.Fprintf(w, "Trace: %v simulated, peak every %v, %.0f new sessions/s at peak, %.0fx swing, mean lifetime %v, %d players/session; "+
		"%d sessions/server, allocation lead time %v, drain grace %v, seed %d.\n\n",
		cfg.Duration, cfg.Period, cfg.PeakRate, cfg.Swing, cfg.MeanLifetime, cfg.Members, cfg.Capacity, cfg.LeadTime, cfg.DrainGrace, cfg.Seed)
	fmt.Fprintln(w, "| policy | sessions | peak demand | peak servers | server-hours | avg idle capacity | rejected | p50 wait for a slot | p99 wait for a slot | drains | moves |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.All() {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.1f | %.1f %% | %d | %v | %v | %d | %d |\n",
			r.Policy, r.Sessions, r.PeakDemand, r.PeakServers, r.ServerSeconds/3600, 100*r.AvgIdle, r.Rejected,
			r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Drains, r.Moves)
	}
	if shared.PeakServers > 0 {
		fmt.Fprintf(w, "\nkumi pool against Agones counters: %.2fx fewer server-hours, %.2fx fewer peak servers. "+
			"Against one session per server: %.1fx fewer server-hours, %.1fx fewer peak servers.\n",
			agones.ServerSeconds/max(1, shared.ServerSeconds), float64(agones.PeakServers)/float64(shared.PeakServers),
			baseline.ServerSeconds/max(1, shared.ServerSeconds), float64(baseline.PeakServers)/float64(shared.PeakServers))
	}
	fmt.Fprintf(w, "\nAgones counters: %d sessions/server in a `sessions` Counter, allocation by Counter priority Ascending "+
		"(fullest server with room first), FleetAutoscaler Counter policy bufferSize %d synced every %v, "+
		"only empty (Ready) servers deleted on scale-down (counted as drains), no session moves.\n",
		cfg.Capacity, cfg.AgonesBuffer, cfg.AgonesSync)
	fmt.Fprintln(w, "\nPool settings of the shared policy (the one-session-per-server baseline uses the same pool with one session per server and a high watermark scaled down by the capacity):")
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

// plotColours are the capacity lines' colours, in Results.All order (demand is red).
var plotColours = []string{"#1f77b4", "#2ca02c", "#9467bd"}

// SVG writes one plot of demand and every policy's capacity over time.
func SVG(w io.Writer, res Results) {
	const (
		width, height = 900.0, 380.0
		left, right   = 70.0, 20.0
		top, bottom   = 30.0, 50.0
	)
	all := res.All()
	demand := res.Shared.Series
	maxY := 1
	for _, r := range all {
		for _, s := range r.Series {
			maxY = max(maxY, s.Capacity, s.Demand)
		}
	}
	n := max(1, len(demand)-1)
	x := func(i int) float64 { return left + (width-left-right)*float64(i)/float64(n) }
	y := func(v int) float64 { return height - bottom - (height-top-bottom)*float64(v)/float64(maxY) }
	line := func(series []Sample, val func(Sample) int) string {
		var b strings.Builder
		step := max(1, len(series)/1500) // keep the file small
		for i := 0; i < len(series); i += step {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(val(series[i])))
		}
		return b.String()
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%.0f" y="18">session slots on live servers (capacity) per policy vs sessions (demand)</text>`+"\n", left)
	fmt.Fprintf(w, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, height-bottom, width-right, height-bottom)
	fmt.Fprintf(w, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, height-bottom)
	for i := 0; i <= 4; i++ {
		v := maxY * i / 4
		fmt.Fprintf(w, `<text x="%.0f" y="%.1f" text-anchor="end">%d</text>`+"\n", left-5, y(v)+4, v)
	}
	if len(demand) > 0 {
		for i := 0; i <= 4; i++ {
			fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(n*i/4), height-bottom+18, clock(demand[n*i/4].T))
		}
	}
	fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">simulated time (h:mm)</text>`+"\n", left+(width-left-right)/2, height-8)
	fmt.Fprintf(w, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">sessions</text>`+"\n", top+(height-top-bottom)/2)
	for i, r := range all {
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", plotColours[i], line(r.Series, func(s Sample) int { return s.Capacity }))
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="%s">capacity: %s</text>`+"\n", width-330, top+5+15*float64(i), plotColours[i], r.Policy)
	}
	fmt.Fprintf(w, `<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="%s"/>`+"\n", line(demand, func(s Sample) int { return s.Demand }))
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#d62728">demand (live + waiting sessions)</text>`+"\n", width-330, top+5+15*float64(len(all)))
	fmt.Fprintln(w, "</svg>")
}

// clock formats a simulated time as h:mm (e.g. 1:30), the time axis' labels.
func clock(d time.Duration) string {
	m := int(d.Round(time.Minute) / time.Minute)
	return fmt.Sprintf("%d:%02d", m/60, m%60)
}

// WriteFiles writes spiky.md and spiky.svg into dir.
func WriteFiles(dir string, cfg Config, directorDefaults pool.Config, res Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("spiky: create %s: %w", dir, err)
	}
	var md strings.Builder
	Markdown(&md, cfg, directorDefaults, res)
	md.WriteString("\n![capacity vs demand](spiky.svg)\n")
	if err := os.WriteFile(filepath.Join(dir, "spiky.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("spiky: write report: %w", err)
	}
	var svg strings.Builder
	SVG(&svg, res)
	if err := os.WriteFile(filepath.Join(dir, "spiky.svg"), []byte(svg.String()), 0o644); err != nil {
		return fmt.Errorf("spiky: write plot: %w", err)
	}
	return nil
}
