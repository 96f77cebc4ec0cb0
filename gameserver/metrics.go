package gameserver

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/gameserver/wire"
)

// dropReason says why a datagram was dropped.
type dropReason int

const (
	dropOversized     dropReason = iota // longer than the largest valid datagram or DATA payload
	dropShort                           // truncated: shorter than its fixed part
	dropVersion                         // unknown protocol version
	dropUnknownType                     // unknown packet type
	dropMalformedJoin                   // JOIN that does not parse
	dropUnknownMember                   // authenticated type naming no live member
	dropReplay                          // sequence number seen before or too old
	dropAuth                            // tag does not verify (forged or corrupted)
	dropBadType                         // a server-to-client type sent to the server
	dropJoinBacklog                     // JOIN queue full
	dropSendError                       // the kernel refused an outgoing datagram
	dropSendBuffer                      // socket send buffer full (batch mode does not wait)
	dropRateLimited                     // DATA beyond the member's rate limit
	dropReasons
)

func (r dropReason) String() string {
	return [...]string{"oversized", "short", "version", "unknown_type", "malformed_join", "unknown_member",
		"replay", "auth", "bad_type", "join_backlog", "send_error", "send_buffer_full", "rate_limited"}[r]
}

// leaveReason says why a member left.
type leaveReason int

const (
	leaveLeft        leaveReason = iota // sent LEAVE
	leaveTimeout                        // silent past member-timeout
	leaveUnacked                        // never acknowledged MOVE/RECONNECT
	leaveReplaced                       // the same player joined the session again
	leaveMoved                          // acknowledged MOVE
	leaveReconnected                    // acknowledged RECONNECT
	leaveReasons
)

func (r leaveReason) String() string {
	return [...]string{"left", "timeout", "unacknowledged", "replaced", "moved", "reconnected"}[r]
}

// metrics are plain atomics on the hot path, exposed to Prometheus through func collectors.
type metrics struct {
	received        atomic.Uint64
	dropped         [dropReasons]atomic.Uint64
	left            [leaveReasons]atomic.Uint64
	joins           [wire.NumRefuseCodes]atomic.Uint64 // index 0: accepted, else the refuse code
	cookies         atomic.Uint64                      // JOINs answered with COOKIE (no valid cookie for their source)
	sourceLimited   atomic.Uint64                      // JOINs refused busy by their source's bucket
	sessionsStarted atomic.Uint64
	sessionsEnded   atomic.Uint64
	drains          atomic.Uint64
	movedSessions   atomic.Uint64
	reconnected     atomic.Uint64 // sessions told RECONNECT on drain
	// batch is the time from a read batch's return to its last datagram handed to the kernel:
	// the latency the relay's own work adds (scheduling of the process comes on top).
	batch prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{}
	const ns, sub = "kumi", "gameserver"
	labels := prometheus.Labels{"server": s.name}
	counter := func(name, help string, extra prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		l := prometheus.Labels{}
		for k, x := range labels {
			l[k] = x
		}
		for k, x := range extra {
			l[k] = x
		}
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: l},
			func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: labels}, f)
	}
	m.batch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "relay_batch_seconds", ConstLabels: labels,
		Help:    "Time from a read batch's return to its last forwarded datagram handed to the kernel.",
		Buckets: prometheus.ExponentialBuckets(5e-6, 1.5, 22),
	})
	cs := []prometheus.Collector{
		m.batch,
		gauge("sessions", "Live sessions.", func() float64 { s.mu.RLock(); defer s.mu.RUnlock(); return float64(len(s.sessions)) }),
		gauge("members", "Joined members.", func() float64 { s.mu.RLock(); defer s.mu.RUnlock(); return float64(len(s.members)) }),
		gauge("capacity_sessions", "Most concurrent sessions.", func() float64 { return float64(s.cfg.Capacity) }),
		gauge("draining", "1 while draining or stopping.", func() float64 {
			if s.State() != StateAccepting {
				return 1
			}
			return 0
		}),
		counter("packets_received_total", "Datagrams read from the socket.", nil, &m.received),
		counter("packets_relayed_total", "Datagrams sent to members by the relay (DATA fan-out and KEEPALIVE answers).", nil, &s.relayed),
		counter("sessions_started_total", "Sessions created by a first JOIN.", nil, &m.sessionsStarted),
		counter("sessions_ended_total", "Sessions whose last member left.", nil, &m.sessionsEnded),
		counter("join_cookies_total", "JOINs answered with COOKIE because they carried no valid cookie for their source address (no state kept).", nil, &m.cookies),
		counter("joins_source_limited_total", "JOINs refused busy by their source address's rate limit (also counted in joins_total{result=\"busy\"}).", nil, &m.sourceLimited),
		counter("drains_total", "Drains started.", nil, &m.drains),
		counter("session_moves_total", "Sessions moved on drain (every member told MOVE).", prometheus.Labels{"result": "moved"}, &m.movedSessions),
		counter("session_moves_total", "Sessions moved on drain (every member told MOVE).", prometheus.Labels{"result": "reconnect"}, &m.reconnected),
	}
	for r := range dropReasons {
		cs = append(cs, counter("packets_dropped_total", "Datagrams dropped, by reason.", prometheus.Labels{"reason": r.String()}, &m.dropped[r]))
	}
	for r := range leaveReasons {
		cs = append(cs, counter("members_left_total", "Members gone, by reason.", prometheus.Labels{"reason": r.String()}, &m.left[r]))
	}
	for i := range m.joins {
		result := "accepted"
		if i > 0 {
			result = wire.RefuseCode(i).String()
		}
		cs = append(cs, counter("joins_total", "JOINs answered, by result (accepted or the refuse reason).", prometheus.Labels{"result": result}, &m.joins[i]))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gameserver: register metrics: %w", err)
		}
	}
	return m, nil
}
