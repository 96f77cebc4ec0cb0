package director

import (
	"time"

	"github.com/kumi-dev/kumi/director/pool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	placements    *prometheus.CounterVec // backend, kind (new|joined)
	unplaced      *prometheus.CounterVec // reason
	assignLatency prometheus.Histogram
	placeLatency  prometheus.Histogram
	assigned      prometheus.Counter
	assignFailed  *prometheus.CounterVec // cause
	allocations   *prometheus.CounterVec // backend, result
	allocLatency  *prometheus.HistogramVec
	drains        *prometheus.CounterVec // backend
	moves         *prometheus.CounterVec // result
	reports       *prometheus.CounterVec // known (true|false)
	fetches       *prometheus.CounterVec // profile, result
	placeWaits    *prometheus.CounterVec // backend, result (refilled|timeout)
	failovers     *prometheus.CounterVec // from, to
	refused       *prometheus.CounterVec // reason (missing|invalid|expired)
	// dedicatedServers: game, version, outcome (reclaimed|warm_lost|reuse_refused); dedicated.go.
	dedicatedServers *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, p *pool.Pool) (*metrics, error) {
	m := &metrics{
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_placements_total",
			Help: "Matches placed, by backend and kind (new session, or joined its group's live session)."}, []string{"backend", "kind"}),
		unplaced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_unplaced_matches_total",
			Help: "Matches released back to Open Match because they could not be placed, by reason."}, []string{"reason"}),
		assignLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kumi_director_ticket_assignment_seconds",
			Help:    "Ticket create_time to the end of its AssignTickets call.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14)}),
		placeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kumi_director_match_handling_seconds",
			Help:    "The director's own share: a match received from FetchMatches to the end of its AssignTickets call.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		assigned: prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_director_tickets_assigned_total",
			Help: "Tickets assigned."}),
		assignFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_assignment_failures_total",
			Help: "Tickets Open Match did not assign, by cause."}, []string{"cause"}),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_allocations_total",
			Help: "Pool refill allocations, by backend and result (allocated, already_pooled, unallocated, error)."}, []string{"backend", "result"}),
		allocLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kumi_director_allocation_seconds",
			Help: "Allocation latency by backend.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"backend"}),
		drains: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_drains_total",
			Help: "Servers asked to drain on scale-in or by the admin API, by backend."}, []string{"backend"}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_moves_total",
			Help: "Session move requests, by result (moved, no_room, error)."}, []string{"result"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_reports_total",
			Help: "Load reports received, by whether the server is in the pool."}, []string{"known"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_fetches_total",
			Help: "FetchMatches calls by profile and result (ok, error)."}, []string{"profile", "result"}),
		placeWaits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_placement_waits_total",
			Help: "New sessions that waited for the refill of the backend the weights chose, by backend and result (refilled, timeout)."}, []string{"backend", "result"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_failovers_total",
			Help: "New sessions placed on another backend than the weights chose (only with -failover=spill), by chosen and used backend."}, []string{"from", "to"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_tickets_refused_total",
			Help: "Tickets in matches never assigned because they lack a valid kumi frontend seal (created straight in the core), by reason."}, []string{"reason"}),
		dedicatedServers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_director_dedicated_servers_total",
			Help: "Dedicated game servers the director let go, by game, version and outcome: reclaimed (gone after its match), warm_lost (gone before use), reuse_refused (a used server allocated again, not given a second match)."}, []string{"game", "version", "outcome"}),
	}
	// Series with a fixed set of label values exist from the start at 0: a dashboard or an alert on
	// rate() sees "no moves yet" instead of no data until the first one.
	for _, r := range []string{"moved", "no_room", "error"} {
		m.moves.WithLabelValues(r)
	}
	for _, k := range []string{"true", "false"} {
		m.reports.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil // nowhere to export to, as for the other components
	}
	for _, c := range []prometheus.Collector{m.placements, m.unplaced, m.assignLatency, m.placeLatency, m.assigned, m.assignFailed,
		m.allocations, m.allocLatency, m.drains, m.moves, m.reports, m.fetches, m.placeWaits, m.failovers, m.refused, m.dedicatedServers, &poolCollector{p: p}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// poolCollector exports the pool's state at scrape time.
type poolCollector struct{ p *pool.Pool }

var (
	descFree     = prometheus.NewDesc("kumi_director_pool_free_slots", "Free session slots on accepting servers, by backend.", []string{"backend"}, nil)
	descTarget   = prometheus.NewDesc("kumi_director_pool_target_slots", "Free session slots the pool keeps, by backend.", []string{"backend"}, nil)
	descWeight   = prometheus.NewDesc("kumi_director_traffic_weight_ratio", "Traffic weight of a backend (1 = 100 %).", []string{"backend"}, nil)
	descServers  = prometheus.NewDesc("kumi_director_servers", "Servers in the pool, by backend and state.", []string{"backend", "state"}, nil)
	descSessions = prometheus.NewDesc("kumi_director_server_sessions", "Sessions (live and reserved) per server.", []string{"backend", "server"}, nil)
	descRate     = prometheus.NewDesc("kumi_director_session_rate", "Recent new sessions per second.", nil, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFree, descTarget, descWeight, descServers, descSessions, descRate} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for b, w := range c.p.Weights() {
		ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(w)/10000, b)
		ch <- prometheus.MustNewConstMetric(descFree, prometheus.GaugeValue, float64(c.p.Free(b, now)), b)
		ch <- prometheus.MustNewConstMetric(descTarget, prometheus.GaugeValue, float64(c.p.Target(b, now)), b)
	}
	counts := map[[2]string]int{}
	for _, s := range c.p.Snapshot(now).Servers {
		counts[[2]string{s.Backend, s.State}]++
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(s.Sessions), s.Backend, s.Name)
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descServers, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, c.p.Rate(now))
}
