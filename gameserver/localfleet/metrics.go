package localfleet

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	servers       *prometheus.GaugeVec
	allocations   *prometheus.CounterVec
	deleted       *prometheus.CounterVec
	started       prometheus.Counter
	startFailures prometheus.Counter
}

func newMetrics(fleet string, reg prometheus.Registerer) (*metrics, error) {
	labels := prometheus.Labels{"fleet": fleet}
	m := &metrics{
		servers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kumi_localfleet_gameservers", Help: "Game servers of the local fleet by state (Starting, Ready, Allocated incl. Reserved).", ConstLabels: labels,
		}, []string{"state"}),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumi_localfleet_allocations_total", Help: "Allocations by result state.", ConstLabels: labels,
		}, []string{"result"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumi_localfleet_gameservers_deleted_total", Help: "Game servers deleted, by reason (shutdown, unhealthy, crash).", ConstLabels: labels,
		}, []string{"reason"}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kumi_localfleet_gameservers_started_total", Help: "Game-server processes started.", ConstLabels: labels,
		}),
		startFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kumi_localfleet_start_failures_total", Help: "Game servers that could not be started.", ConstLabels: labels,
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.servers, m.allocations, m.deleted, m.started, m.startFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("localfleet: register metrics: %w", err)
		}
	}
	return m, nil
}
