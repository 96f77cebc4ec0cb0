package openmatch

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	created, assigned, deleted, expired prometheus.Counter
	cycles                              *prometheus.CounterVec // result=ok|error
	cycleSeconds                        prometheus.Histogram
	fetchCalls                          *prometheus.CounterVec // result=ok|error|canceled
	proposals, accepted, dropped        prometheus.Counter
}

// newMetrics creates the core's metrics and registers them on reg (nil: unregistered). Gauges
// are computed at scrape time from the store, so they are exact and cost nothing per request.
func newMetrics(reg prometheus.Registerer, tickets *ticketStore, backfills *backfillStore) (*metrics, error) {
	const ns, sub = "kumi", "openmatch"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		created:  c("tickets_created_total", "Tickets created by CreateTicket."),
		assigned: c("tickets_assigned_total", "Ticket assignments made (AssignTickets and AcknowledgeBackfill)."),
		deleted:  c("tickets_deleted_total", "Tickets deleted by DeleteTicket."),
		expired:  c("tickets_expired_total", "Assigned tickets deleted after assigned-delete-timeout."),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "fetch_cycles_total",
			Help: "Synchronizer cycles by result."}, []string{"result"}),
		cycleSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "fetch_cycle_seconds",
			Help:    "Duration of a synchronizer cycle from its first registration to its matches being committed.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		fetchCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "fetch_matches_total",
			Help: "FetchMatches calls by result."}, []string{"result"}),
		proposals: c("proposals_total", "Match proposals received from match functions."),
		accepted:  c("matches_accepted_total", "Matches accepted by the evaluator and streamed to callers."),
		dropped:   c("matches_dropped_total", "Accepted matches dropped because a ticket was already pending/assigned or the backfill generation was stale."),
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{m.created, m.assigned, m.deleted, m.expired, m.cycles, m.cycleSeconds,
		m.fetchCalls, m.proposals, m.accepted, m.dropped, &stateCollector{tickets: tickets, backfills: backfills,
			active:    prometheus.NewDesc(ns+"_"+sub+"_tickets_active", "Tickets that queries return (unassigned, not pending).", nil, nil),
			pending:   prometheus.NewDesc(ns+"_"+sub+"_tickets_pending", "Tickets in an accepted match, hidden from queries until assigned, released or timed out.", nil, nil),
			assigned:  prometheus.NewDesc(ns+"_"+sub+"_tickets_assigned", "Assigned tickets not yet deleted.", nil, nil),
			backfillN: prometheus.NewDesc(ns+"_"+sub+"_backfills", "Stored backfills.", nil, nil),
		}}
	for _, col := range collectors {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("openmatch: register metrics: %w", err)
		}
	}
	return m, nil
}

// stateCollector reports the ticket states from one pass over the store per scrape.
type stateCollector struct {
	tickets                              *ticketStore
	backfills                            *backfillStore
	active, pending, assigned, backfillN *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.pending
	ch <- c.assigned
	ch <- c.backfillN
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	a, p, as := c.tickets.counts()
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(a))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(p))
	ch <- prometheus.MustNewConstMetric(c.assigned, prometheus.GaugeValue, float64(as))
	ch <- prometheus.MustNewConstMetric(c.backfillN, prometheus.GaugeValue, float64(c.backfills.count()))
}
