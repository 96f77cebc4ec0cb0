package director

import (
	"fmt"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kumi-dev/kumi/console"
)

// ConsoleSource is what the live console (console/) reads from and changes on this director: the
// pool, the ticket→assignment histogram, recent events, and the traffic weights. `kumi local`
// serves a console of its own over it; the director serves one on its admin listener.
func (d *Director) ConsoleSource() console.Source { return consoleSource{d} }

type consoleSource struct{ d *Director }

func (s consoleSource) State() console.State {
	d := s.d
	now := time.Now()
	snap := d.pool.Snapshot(now)
	st := console.State{Sessions: snap.Sessions, Groups: snap.Groups, SessionRate: d.pool.Rate(now),
		Servers: make([]console.Server, 0, len(snap.Servers)), Events: d.events.list()}
	for _, v := range snap.Servers {
		st.Servers = append(st.Servers, console.Server{Name: v.Name, Backend: v.Backend, Address: v.Address, State: v.State,
			Capacity: v.Capacity, Used: v.Used, Free: v.Free, Sessions: v.Sessions, Adopted: v.Adopted})
	}
	for b, w := range d.pool.Weights() {
		st.Backends = append(st.Backends, console.Backend{Name: b, Free: d.pool.Free(b, now), Target: d.pool.Target(b, now), Weight: float64(w) / 100})
	}
	sort.Slice(st.Backends, func(i, j int) bool { return st.Backends[i].Name < st.Backends[j].Name })
	st.Assignment = histogram(d.m.assignLatency)
	return st
}

func (s consoleSource) SetWeights(percent map[string]float64) (map[string]float64, error) {
	if err := s.d.setWeightsPercent(percent); err != nil {
		return nil, err
	}
	return s.d.weightsDoc().Weights, nil
}

func (s consoleSource) Changed() <-chan struct{} { return s.d.events.wait() }

// setWeightsPercent is PUT /weights' change, for the admin API and the console alike.
func (d *Director) setWeightsPercent(percent map[string]float64) error {
	units := make(map[string]int, len(percent))
	for b, p := range percent {
		u, err := PercentToUnits(p)
		if err != nil {
			return fmt.Errorf("weights[%q]: %w", b, err)
		}
		units[b] = u
	}
	return d.SetWeights(units)
}

// histogram reads a Prometheus histogram (registered or not) as the console shows it.
func histogram(h interface{ Write(*dto.Metric) error }) console.Histogram {
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return console.Histogram{}
	}
	ph := m.Histogram
	out := console.Histogram{Count: ph.GetSampleCount(), Sum: ph.GetSampleSum()}
	var below uint64
	for _, b := range ph.GetBucket() {
		n := b.GetCumulativeCount()
		out.Buckets = append(out.Buckets, console.Bucket{LE: b.GetUpperBound(), N: n - below})
		below = n
	}
	out.Over = out.Count - below
	return out
}
