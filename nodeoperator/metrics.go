package nodeoperator

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the operator's Prometheus series, registered on the registry given to NewMetrics.
type Metrics struct {
	dark        prometheus.Gauge
	kubeletOnly prometheus.Gauge
	tailnetOnly prometheus.Gauge
	pool        prometheus.Gauge
	vms         prometheus.Gauge
	breaker     prometheus.Gauge
	failovers   *prometheus.CounterVec
	replacement prometheus.Histogram
	syncErrors  prometheus.Counter
}

// Failover outcomes (label of kumi_nodeoperator_failovers_total).
const (
	OutcomeFlapped        = "flapped"         // back inside the flap grace: no VM
	OutcomeBreaker        = "breaker_blocked" // dark past the grace while the breaker was open
	OutcomeReplaced       = "replaced"        // fallback Node Ready
	OutcomeStartupTimeout = "startup_timeout" // a VM did not join in time and was replaced
	OutcomeFailed         = "failed"          // attempts exhausted
	OutcomeCreateError    = "create_error"    // VM create failed after retries (retried next pass)
	OutcomeRecovered      = "recovered"       // fallback drained and removed after on-prem came back
	OutcomeLifetime       = "max_lifetime"    // fallback drained and removed at its maximum lifetime
	OutcomeOrphanSwept    = "orphan_swept"    // unclaimed VM deleted
)

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "kumi", Subsystem: "nodeoperator", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	m := &Metrics{
		dark:        g("dark_nodes", "On-prem nodes with both signals (kubelet, tailnet) down."),
		kubeletOnly: g("kubelet_down_nodes", "On-prem nodes whose kubelet is down while their tailnet peer answers (reported, no VM by default)."),
		tailnetOnly: g("tailnet_down_nodes", "On-prem nodes whose tailnet peer is down while the kubelet is Ready."),
		pool:        g("onprem_nodes", "On-prem nodes matched by the node selector."),
		vms:         g("vms", "Compute Engine VMs labelled managed-by=kumi."),
		breaker:     g("breaker_open", "1 while too many on-prem nodes are dark for the operator to buy VMs."),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kumi", Subsystem: "nodeoperator",
			Name: "failovers_total", Help: "Failover decisions by outcome."}, []string{"outcome"}),
		replacement: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "kumi", Subsystem: "nodeoperator",
			Name: "time_to_replacement_seconds", Help: "From a node going dark to its fallback Node being Ready.",
			Buckets: []float64{60, 120, 180, 240, 300, 420, 600, 900, 1200, 1800}}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kumi", Subsystem: "nodeoperator",
			Name: "sync_errors_total", Help: "Passes that ended in an error (retried next pass)."}),
	}
	reg.MustRegister(m.failovers, m.replacement, m.syncErrors)
	for _, o := range []string{OutcomeFlapped, OutcomeBreaker, OutcomeReplaced, OutcomeStartupTimeout, OutcomeFailed,
		OutcomeCreateError, OutcomeRecovered, OutcomeLifetime, OutcomeOrphanSwept} {
		m.failovers.WithLabelValues(o)
	}
	return m
}
