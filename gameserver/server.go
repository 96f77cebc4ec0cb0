package gameserver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/kumi-dev/kumi/api/control"
	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/token"
)

// maxEnded bounds the ended-session ids kept for the next report while the director is unreachable.
const maxEnded = 100000

// Verifier checks server tokens; *token.Verifier implements it.
type Verifier interface {
	VerifyServerToken(raw, server string) (token.ServerClaims, error)
}

// State is where the server is in its life.
type State int32

const (
	StateAccepting State = iota // admitting sessions and members
	StateDraining               // refusing JOINs; sessions end, then are moved
	StateStopping               // empty after a drain (or shutting down)
)

func (s State) String() string {
	switch s {
	case StateAccepting:
		return "accepting"
	case StateDraining:
		return "draining"
	case StateStopping:
		return "stopping"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Option supplies a dependency to Start.
type Option func(*deps)

type deps struct {
	sdk      SDK
	verifier Verifier
	director control.DirectorClient
	// v1Keys makes members' keys authenticate only, as protocol v1 did: set by the relay
	// benchmark's v1 baseline (withV1Keys in bench_test.go) and nothing else.
	v1Keys bool
}

// WithSDK makes the server use sdk (e.g. *sdk.Client or a test's client of a local SDK server)
// instead of dialing cfg.SDKAddr. It implies cfg.SDK.
func WithSDK(s SDK) Option { return func(d *deps) { d.sdk = s } }

// WithVerifier makes the server check tokens with v instead of building one from cfg.Token.
func WithVerifier(v Verifier) Option { return func(d *deps) { d.verifier = v } }

// WithDirector makes the server report to and move sessions through c instead of dialing
// cfg.Director.
func WithDirector(c control.DirectorClient) Option { return func(d *deps) { d.director = c } }

// peer is a member's current address.
type peer struct {
	ap netip.AddrPort
}

func newPeer(ap netip.AddrPort) *peer {
	return &peer{ap: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
}

// session is one live session. members is copy-on-write under Server.mu so the relay reads it
// under a read lock without copying.
type session struct {
	id      string
	started time.Time
	members []*member
}

// member is one joined client. The fields the relay touches for every datagram come first, so a
// sender's or recipient's hot state spans two cache lines instead of being spread over the struct
// (with 1000s of members these lookups miss the cache).
type member struct {
	id   uint32
	sess *session
	// key by value: one pointer less to chase per datagram and recipient.
	key     wire.Key
	addr    atomic.Pointer[peer]
	sendSeq atomic.Uint64
	seen    atomic.Int64 // unix nanoseconds of the last authenticated packet (to seenResolution)
	// mu guards window and the bucket when several relay workers run (Config.Workers > 1);
	// with one, its goroutine owns them and takes no lock.
	mu     sync.Mutex
	window wire.Window
	// DATA token bucket: tokens, and the time (unix ns) they were counted.
	tokens   float64
	tokensAt int64

	player string
	accept []byte // the ACCEPT it got, sent again for a retransmitted JOIN
	jti    string
	// joinSpan is the context of its JOIN span (internal/tracing; invalid when tracing is off), which
	// a drain's and a move's spans link to.
	joinSpan trace.SpanContext

	// Under Server.mu: a MOVE or RECONNECT the member must acknowledge by LEAVE.
	pendingType wire.Type
	pendingBody []byte
	pendingBy   time.Time
}

type jtiEntry struct {
	until  time.Time
	member *member // nil once the member is gone
	// The admitting JOIN's nonce and ephemeral key: the same JOIN again (a lost ACCEPT) is
	// answered with the same ACCEPT; any other JOIN with this token is a replay.
	nonce [wire.NonceLen]byte
	eph   [wire.PublicLen]byte
}

// joinReq is one JOIN that passed the cookie and per-source checks, queued for verification.
type joinReq struct {
	join wire.Join // Sealed is a copy owned by the request
	from *peer
	size int // datagram length: REFUSE never exceeds it (no amplification)
}

// Server is one running game server.
type Server struct {
	log     *slog.Logger
	cfg     Config
	name    string
	public  string
	conn    *net.UDPConn   // conns[0]: admission answers and server messages go out on it
	conns   []*net.UDPConn // one per relay worker, all bound to the same address
	deps    deps
	m       *metrics
	limiter *rate.Limiter
	// inst is this process's instance key: its id is reported to the director, which names it in
	// the tokens it mints; JOINs are sealed to it.
	inst *wire.Instance
	// cookieSecret keys the JOIN address cookies (one wire.Cookies per goroutine).
	cookieSecret [32]byte
	// sources are the per-source JOIN buckets, shared by the relay workers: a source's JOINs
	// from several ports may reach several workers.
	sourcesMu sync.Mutex
	sources   *sourceLimits

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error

	state atomic.Int32
	// moving is set once a drain starts moving sessions; from then on no JOIN is admitted.
	moving atomic.Bool

	mu       sync.RWMutex
	sessions map[string]*session
	members  map[uint32]*member
	jtis     map[string]*jtiEntry
	ended    []string // sessions ended since the last successful report

	admitCh    chan joinReq
	reportKick chan struct{}
	countKick  chan struct{}
	// counterMu orders counter writes with the drain's SDK Shutdown: after sdkShut is set no
	// counter write is sent (the sidecar would apply it to a GameServer that is shutting down).
	counterMu sync.Mutex
	sdkShut   bool
	emptyKick chan struct{}
	drainOnce sync.Once
	drainCh   chan string
	drained   chan struct{}
	done      chan struct{} // closed when everything is released
	relayed   atomic.Uint64 // datagrams sent to members by the relay

	lastReport  time.Time // under mu
	lastRelayed uint64    // under mu
	closers     []interface{ Close() error }
}

// Start binds the UDP socket and starts serving; it returns once the socket is bound (and, with
// the SDK, once Ready was called). The server stops when ctx ends or after a drain empties it
// (cfg.ExitWhenDrained); Wait blocks until every goroutine and socket is released.
func Start(ctx context.Context, log *slog.Logger, cfg Config, reg prometheus.Registerer, opts ...Option) (*Server, error) {
	var d deps
	for _, o := range opts {
		o(&d)
	}
	if d.sdk != nil {
		cfg.SDK = true
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Workers == 0 {
		cfg.Workers = defaultWorkers()
	}
	config.Log(ctx, log, "gameserver", &cfg)
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		log:        log,
		cfg:        cfg,
		name:       cfg.Name,
		deps:       d,
		limiter:    rate.NewLimiter(rate.Limit(cfg.JoinRate), cfg.JoinBurst),
		sessions:   make(map[string]*session),
		members:    make(map[uint32]*member),
		jtis:       make(map[string]*jtiEntry),
		sources:    newSourceLimits(cfg),
		admitCh:    make(chan joinReq, cfg.JoinBacklog),
		reportKick: make(chan struct{}, 1),
		countKick:  make(chan struct{}, 1),
		emptyKick:  make(chan struct{}, 1),
		drainCh:    make(chan string, 1),
		drained:    make(chan struct{}),
		done:       make(chan struct{}),
	}
	inst, err := wire.NewInstance()
	if err != nil {
		return nil, fmt.Errorf("gameserver: %w", err)
	}
	s.inst, s.cookieSecret = inst, wire.NewCookieSecret()
	s.ctx, s.cancel = context.WithCancel(ctx)
	ok := false
	defer func() {
		if !ok {
			s.cancel()
			s.closeDeps()
		}
	}()
	if s.deps.verifier == nil {
		v, err := token.NewVerifier(s.ctx, cfg.Token)
		if err != nil {
			return nil, fmt.Errorf("gameserver: token keys: %w", err)
		}
		s.deps.verifier = v
	}
	if err := s.dialDeps(); err != nil {
		return nil, err
	}
	listen := cfg.ListenAddr
	if cfg.SDK {
		var err error
		if listen, err = s.fromGameServer(); err != nil {
			return nil, err
		}
	}
	if err := s.listen(listen); err != nil {
		return nil, err
	}
	if s.public == "" {
		s.public = cfg.PublicAddr
	}
	if s.public == "" {
		s.public = s.conn.LocalAddr().String()
	}
	s.log = log.With("server", s.name)
	if ap, err := netip.ParseAddrPort(s.public); err == nil && ap.Addr().IsUnspecified() && s.deps.director != nil {
		// The director hands this address to players: 0.0.0.0 or :: reaches only this machine.
		s.log.Warn("public address is unspecified, so players on other machines cannot reach this server: set -public-addr", "public", s.public)
	}
	m, err := newMetrics(reg, s)
	if err != nil {
		s.closeConns()
		return nil, err
	}
	s.m = m
	if err := s.serveMetrics(reg); err != nil {
		s.closeConns()
		return nil, err
	}
	if s.deps.director != nil {
		// Report once before Ready: the director learns this instance before anyone can allocate
		// the server, so the first tokens it mints for it already name the instance. A director
		// that is down does not hold the start up; the report loop keeps trying.
		if _, err := s.report(); err != nil {
			s.log.Warn("first load report failed; retrying in the background", "err", err)
		}
	}
	if cfg.SDK {
		if err := s.sdkReady(); err != nil {
			s.closeConns()
			return nil, err
		}
	}
	ok = true
	s.run()
	// s.cfg, not cfg: the capacity may have been lowered to the GameServer's counter capacity.
	s.log.Info("game server listening", "addr", s.conn.LocalAddr().String(), "public", s.public, "instance", s.inst.ID(), "io", s.cfg.IO, "workers", len(s.conns), "capacity", s.cfg.Capacity, "max_members", s.cfg.MaxMembers)
	return s, nil
}

// serveMetrics serves /metrics on cfg.MetricsAddr until the server stops.
func (s *Server) serveMetrics(reg prometheus.Registerer) error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	g, ok := reg.(prometheus.Gatherer)
	if !ok {
		return fmt.Errorf("gameserver: metrics-addr set but the registry %T cannot be gathered", reg)
	}
	lis, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("gameserver: metrics-addr: %w", err)
	}
	// With -metrics-addr=127.0.0.1:0 (kumi local) this line is the only way to find the port.
	s.log.Info("metrics listening", "addr", lis.Addr().String())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(lis)
	}()
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		_ = srv.Close()
	}()
	return nil
}

func (s *Server) listen(addr string) error {
	ap, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("gameserver: listen-addr %q: %w", addr, err)
	}
	network := "udp4"
	if ap.IP != nil && ap.IP.To4() == nil {
		network = "udp6"
	}
	n := s.cfg.Workers
	var lc net.ListenConfig
	if n > 1 {
		lc.Control = reusePort
		// SO_REUSEPORT would also let these sockets join another process's group on the same port
		// (a second server started there by mistake), which then silently takes a share of this
		// server's traffic. Binding once without it first makes that mistake the usual "address
		// already in use", and fixes the port when listen-addr says 0.
		probe, err := net.ListenUDP(network, ap)
		if err != nil {
			return fmt.Errorf("gameserver: listen %s: %w", addr, err)
		}
		ap = probe.LocalAddr().(*net.UDPAddr)
		probe.Close()
	}
	for i := range n {
		pc, err := lc.ListenPacket(s.ctx, network, ap.String())
		if err != nil {
			for _, c := range s.conns {
				c.Close()
			}
			return fmt.Errorf("gameserver: listen %s (socket %d of %d): %w", addr, i+1, n, err)
		}
		conn := pc.(*net.UDPConn)
		// Room for bursts: the relay drains the socket in batches.
		_ = conn.SetReadBuffer(4 << 20)
		_ = conn.SetWriteBuffer(4 << 20)
		s.conns = append(s.conns, conn)
		// The rest bind the port the first one got (listen-addr may say port 0).
		ap = conn.LocalAddr().(*net.UDPAddr)
	}
	s.conn = s.conns[0]
	return nil
}

func (s *Server) run() {
	for _, c := range s.conns {
		s.goRun("relay", func() error { return s.relay(c) })
	}
	for range s.cfg.AdmitWorkers {
		s.goRun("admit", s.admitLoop)
	}
	s.goRun("sweep", s.sweepLoop)
	s.goRun("drain", s.drainLoop)
	if s.deps.director != nil {
		s.goRun("report", s.reportLoop)
	}
	if s.cfg.SDK {
		s.goRun("sdk-health", s.healthLoop)
		s.goRun("sdk-watch", s.watchLoop)
		s.goRun("sdk-counter", s.counterLoop)
	}
	// Closing the socket is what ends the relay's blocking read.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		s.farewell()
		for _, c := range s.conns {
			c.Close()
		}
	}()
	go func() {
		s.wg.Wait()
		s.closeDeps()
		close(s.done)
	}()
}

func (s *Server) goRun(name string, fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil && s.ctx.Err() == nil {
			s.errMu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("gameserver %s: %w", name, err)
			}
			s.errMu.Unlock()
			s.log.Error("game server loop failed", "loop", name, "err", err)
			s.cancel()
		}
	}()
}

// Addr is the bound UDP address (host:port).
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// PublicAddr is the address reported to the director and carried in MOVE: where clients send to.
func (s *Server) PublicAddr() string { return s.public }

// Name is the server's name, the audience of the tokens it admits.
func (s *Server) Name() string { return s.name }

// Instance is this process's instance id (reported to the director, claim "ins" of the tokens it
// admits): new at every start, so tokens minted for an earlier life of this server are refused.
func (s *Server) Instance() string { return s.inst.ID() }

// State is the server's current state.
func (s *Server) State() State { return State(s.state.Load()) }

// Drained is closed once a drain has emptied the server.
func (s *Server) Drained() <-chan struct{} { return s.drained }

// Done is closed when the server has begun stopping (ctx ended, a loop failed, or drained with
// ExitWhenDrained).
func (s *Server) Done() <-chan struct{} { return s.ctx.Done() }

// Wait blocks until every goroutine has ended and the socket is closed; it returns the first loop
// failure, or nil after a normal stop.
func (s *Server) Wait() error {
	<-s.done
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Sessions, Members int
	Received, Relayed uint64
	Dropped           map[string]uint64 // by reason
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	st := Stats{Sessions: len(s.sessions), Members: len(s.members)}
	s.mu.RUnlock()
	st.Received = s.m.received.Load()
	st.Relayed = s.relayed.Load()
	st.Dropped = make(map[string]uint64)
	for r := range dropReasons {
		if n := s.m.dropped[r].Load(); n > 0 {
			st.Dropped[dropReason(r).String()] = n
		}
	}
	return st
}

// kick wakes the reporter and the counter updater.
func (s *Server) kick() {
	for _, c := range []chan struct{}{s.reportKick, s.countKick} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// sendTo seals one server message for m and sends it. Used off the hot path.
func (s *Server) sendTo(m *member, t wire.Type, body []byte) {
	p := m.key.Seal(make([]byte, 0, wire.Overhead+len(body)), wire.ToClient, wire.Header{Type: t, Seq: m.sendSeq.Add(1)}, body)
	if _, err := s.conn.WriteToUDPAddrPort(p, m.addr.Load().ap); err != nil && s.ctx.Err() == nil {
		s.log.Debug("send failed", "member", m.id, "type", t, "err", err)
	}
}

func (s *Server) sendPlain(to *peer, p []byte) {
	if _, err := s.conn.WriteToUDPAddrPort(p, to.ap); err != nil && s.ctx.Err() == nil {
		s.log.Debug("send failed", "to", to.ap, "err", err)
	}
}

// removeLocked drops m from the server; s.mu must be held for writing.
func (s *Server) removeLocked(m *member, reason leaveReason) {
	if s.members[m.id] != m {
		return
	}
	delete(s.members, m.id)
	if e := s.jtis[m.jti]; e != nil && e.member == m {
		e.member = nil
	}
	sess := m.sess
	rest := make([]*member, 0, len(sess.members))
	for _, o := range sess.members {
		if o != m {
			rest = append(rest, o)
		}
	}
	sess.members = rest
	s.m.left[reason].Add(1)
	if len(rest) == 0 {
		delete(s.sessions, sess.id)
		if s.deps.director != nil && len(s.ended) < maxEnded {
			// Only reports consume this list; beyond maxEnded the director still learns from
			// the next snapshot, which no longer lists the session.
			s.ended = append(s.ended, sess.id)
		}
		s.m.sessionsEnded.Add(1)
		s.log.Info("session ended", "session", sess.id, "age", time.Since(sess.started).Round(time.Millisecond))
		if len(s.sessions) == 0 {
			select {
			case s.emptyKick <- struct{}{}:
			default:
			}
		}
	}
	s.kick()
}

// newMemberIDLocked returns an unused random non-zero member id.
func (s *Server) newMemberIDLocked() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		id := binary.BigEndian.Uint32(b[:])
		if id != 0 && s.members[id] == nil {
			return id
		}
	}
}

// farewell tells every member the server is going away (best effort, once) as it stops.
func (s *Server) farewell() {
	s.mu.RLock()
	ms := make([]*member, 0, len(s.members))
	for _, m := range s.members {
		ms = append(ms, m)
	}
	s.mu.RUnlock()
	body := wire.AppendReconnect(nil, wire.Reconnect{Code: wire.ReconnectShutdown, Text: "server stopping"})
	for _, m := range ms {
		s.sendTo(m, wire.TypeReconnect, body)
	}
	if len(ms) > 0 {
		s.log.Info("told remaining members to reconnect", "members", len(ms))
	}
}

func (s *Server) closeDeps() {
	for _, c := range s.closers {
		_ = c.Close()
	}
}

// sweepLoop drops silent members, gives up on unacknowledged MOVE/RECONNECT, retransmits them,
// and forgets expired token ids.
func (s *Server) sweepLoop() error {
	period := min(s.cfg.MemberTimeout/4, s.cfg.MoveRetry, time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

func (s *Server) sweep(now time.Time) {
	type resend struct {
		m    *member
		t    wire.Type
		body []byte
	}
	var timedOut []*member
	var again []resend
	s.mu.Lock()
	cutoff := now.Add(-s.cfg.MemberTimeout).UnixNano()
	for _, m := range s.members {
		switch {
		case m.pendingType != 0 && now.After(m.pendingBy):
			s.log.Warn("member did not acknowledge; dropped", "member", m.id, "player", m.player, "session", m.sess.id, "pending", m.pendingType)
			s.removeLocked(m, leaveUnacked)
		case m.seen.Load() < cutoff:
			s.removeLocked(m, leaveTimeout)
			timedOut = append(timedOut, m)
		case m.pendingType != 0:
			again = append(again, resend{m, m.pendingType, m.pendingBody})
		}
	}
	for id, e := range s.jtis {
		if now.After(e.until) {
			delete(s.jtis, id)
		}
	}
	s.mu.Unlock()
	body := wire.AppendReconnect(nil, wire.Reconnect{Code: wire.ReconnectTimeout, Text: "silent too long"})
	for _, m := range timedOut {
		s.log.Info("member timed out", "member", m.id, "player", m.player, "session", m.sess.id)
		s.sendTo(m, wire.TypeReconnect, body)
	}
	for _, r := range again {
		s.sendTo(r.m, r.t, r.body)
	}
}

func (s *Server) closeConns() {
	for _, c := range s.conns {
		c.Close()
	}
}

// errClosed reports whether err is the socket being closed on shutdown.
func errClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
