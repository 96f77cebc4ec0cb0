package e2e

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteFiles writes e2e.md (the table) and e2e.svg (the ticket→assignment histogram) into dir.
func (r *Result) WriteFiles(dir string) error {
	var md strings.Builder
	Header(&md)
	r.Row(&md)
	md.WriteString("\n![ticket→assignment histogram](e2e.svg)\n")
	if err := os.WriteFile(filepath.Join(dir, "e2e.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("e2e: write table: %w", err)
	}
	var svg strings.Builder
	Histogram(&svg, r.AssignSamples)
	if err := os.WriteFile(filepath.Join(dir, "e2e.svg"), []byte(svg.String()), 0o644); err != nil {
		return fmt.Errorf("e2e: write histogram: %w", err)
	}
	return nil
}

// Histogram writes an SVG histogram of ds on a logarithmic time axis (latencies span decades:
// most assignments take milliseconds, a few wait for a refill), with axis titles.
func Histogram(w io.Writer, ds []time.Duration) {
	const (
		width, height = 720.0, 320.0
		left, right   = 60.0, 20.0
		top, bottom   = 30.0, 50.0
		bins          = 40
	)
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for _, d := range ds {
		lo, hi = min(lo, max(d, time.Microsecond)), max(hi, d)
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintln(w, `<rect width="100%" height="100%" fill="white"/>`)
	fmt.Fprintf(w, `<text x="%.0f" y="18">ticket → assignment (%d players)</text>`+"\n", left, len(ds))
	fmt.Fprintf(w, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, height-bottom, width-right, height-bottom)
	fmt.Fprintf(w, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, height-bottom)
	fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">ticket → assignment (log scale)</text>`+"\n", left+(width-left-right)/2, height-8)
	fmt.Fprintf(w, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">players</text>`+"\n", top+(height-top-bottom)/2)
	if len(ds) == 0 {
		fmt.Fprintln(w, "</svg>")
		return
	}
	if hi <= lo {
		hi = lo * 2
	}
	llo, lhi := math.Log(float64(lo)), math.Log(float64(hi))
	bin := func(d time.Duration) int {
		f := (math.Log(float64(max(d, lo))) - llo) / (lhi - llo)
		return min(bins-1, int(f*bins))
	}
	var counts [bins]int
	top1 := 1
	for _, d := range ds {
		counts[bin(d)]++
	}
	for _, c := range counts {
		top1 = max(top1, c)
	}
	bw := (width - left - right) / bins
	for i, c := range counts {
		h := (height - top - bottom) * float64(c) / float64(top1)
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f77b4"/>`+"\n", left+float64(i)*bw+0.5, height-bottom-h, bw-1, h)
	}
	for i := 0; i <= 4; i++ {
		v := top1 * i / 4
		fmt.Fprintf(w, `<text x="%.0f" y="%.1f" text-anchor="end">%d</text>`+"\n", left-5, height-bottom-(height-top-bottom)*float64(v)/float64(top1)+4, v)
	}
	for i := 0; i <= 4; i++ {
		d := time.Duration(math.Exp(llo + (lhi-llo)*float64(i)/4))
		fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">%v</text>`+"\n", left+(width-left-right)*float64(i)/4, height-bottom+18, roundSig(d))
	}
	fmt.Fprintln(w, "</svg>")
}

// roundSig rounds d to about two significant figures, for axis labels.
func roundSig(d time.Duration) time.Duration {
	for unit := time.Duration(1); unit < time.Hour; unit *= 10 {
		if d < 100*unit {
			return d.Round(unit)
		}
	}
	return d.Round(time.Minute)
}
