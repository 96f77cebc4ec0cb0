package frontend

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the frontend's Prometheus series, registered on the registry it is given.
type metrics struct {
	requests  *prometheus.CounterVec   // transport, method, code
	latency   *prometheus.HistogramVec // transport, method
	authFail  *prometheus.CounterVec   // reason
	limited   *prometheus.CounterVec   // scope: player | source
	created   prometheus.Counter
	reused    prometheus.Counter
	cancelled prometheus.Counter
	expired   prometheus.Counter
	foreign   prometheus.Counter
	refiled   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, livePlayers, watching, expiryQueued func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_frontend_requests_total",
			Help: "Client API calls by transport (grpc, http), method and resulting gRPC code."}, []string{"transport", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kumi_frontend_request_seconds",
			Help:    "Client API call duration (watch calls excluded) by transport and method.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1}}, []string{"transport", "method"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_frontend_auth_failures_total",
			Help: "Requests refused for a missing or invalid player token, by reason."}, []string{"reason"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kumi_frontend_rate_limited_total",
			Help: "Requests refused by a rate limit, by scope (player, global)."}, []string{"scope"}),
		created:   prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_frontend_tickets_created_total", Help: "Tickets created in Open Match."}),
		reused:    prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_frontend_tickets_reused_total", Help: "CreateTicket calls answered with the player's existing live ticket."}),
		cancelled: prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_frontend_tickets_cancelled_total", Help: "Tickets deleted at the player's request."}),
		expired:   prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_frontend_tickets_expired_total", Help: "Tickets deleted after ticket-lifetime without an assignment."}),
		foreign: prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_frontend_foreign_ticket_requests_total",
			Help: "Requests naming a ticket that exists but belongs to another player (answered as not found)."}),
		refiled: prometheus.NewCounter(prometheus.CounterOpts{Name: "kumi_frontend_tickets_refiled_total",
			Help: "Waiting players' tickets filed again after Open Match lost them (a core restarted without storage)."}),
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.requests, m.latency, m.authFail, m.limited, m.created, m.reused, m.cancelled, m.expired, m.foreign, m.refiled,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kumi_frontend_live_players", Help: "Players with a live ticket or a call in progress."}, livePlayers),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kumi_frontend_watched_tickets", Help: "Tickets with an open Open Match assignment watch."}, watching),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kumi_frontend_expiry_queue", Help: "Tickets queued for the unassigned-lifetime check."}, expiryQueued),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
