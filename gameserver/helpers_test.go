package gameserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/token"
)

// testLog logs warnings and errors into the test output (KUMI_TEST_LOG=debug for everything).
func testLog(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("KUMI_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	var w io.Writer = io.Discard
	if tt, ok := t.(*testing.T); ok {
		w = tt.Output()
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func newSigner(t testing.TB) *token.Signer {
	t.Helper()
	s, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testConfig is a fast-timing config for a server named name on 127.0.0.1.
func testConfig(name string) Config {
	cfg := Default()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Name = name
	cfg.Keepalive = 200 * time.Millisecond
	cfg.MemberTimeout = 2 * time.Second
	cfg.DrainGrace = 200 * time.Millisecond
	cfg.MoveRetry = 50 * time.Millisecond
	cfg.MoveTimeout = 2 * time.Second
	cfg.ReportInterval = time.Second
	cfg.ReportDebounce = 10 * time.Millisecond
	cfg.HealthPeriod = 100 * time.Millisecond
	return cfg
}

// startServer starts a game server that stops with the test.
func startServer(t testing.TB, cfg Config, signer *token.Signer, opts ...Option) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts = append([]Option{WithVerifier(signer.Verifier("", time.Second))}, opts...)
	s, err := Start(ctx, testLog(t), cfg, prometheus.NewRegistry(), opts...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	testInstances.Store(s.Name(), s.Instance())
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("server %s: %v", s.Name(), err)
		}
	})
	return s
}

// testInstances maps the name of each server a test started to its instance, so mint can name it
// like the director does (tests run one at a time; a name's latest server wins).
var testInstances sync.Map

func mint(t testing.TB, signer *token.Signer, server, session, player string, ttl time.Duration) string {
	t.Helper()
	ins, _ := testInstances.Load(server)
	id, _ := ins.(string)
	return mintIns(t, signer, server, id, session, player, ttl)
}

// mintIns mints a token for server naming instance ins.
func mintIns(t testing.TB, signer *token.Signer, server, ins, session, player string, ttl time.Duration) string {
	t.Helper()
	raw, err := signer.ServerToken(token.ServerClaims{PlayerID: player, SessionID: session, Server: server, Instance: ins, ExpiresAt: time.Now().Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// eventually polls cond for state that has no signal of its own (counters, maps).
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawMember speaks the protocol by hand with the wire package, so tests can forge, replay and
// stay silent in ways the client package never would.
type rawMember struct {
	t      testing.TB
	sock   *net.UDPConn
	server netip.AddrPort
	accept wire.Accept
	keys   wire.SessionKeys
	key    *wire.Key
	join   []byte // the JOIN as last sent (with the cookie)
	raw    []byte // the ACCEPT as received
	seq    uint64
	window wire.Window
}

func newRawSocket(t testing.TB) *net.UDPConn {
	t.Helper()
	return newRawSocketOn(t, net.IPv4(127, 0, 0, 1))
}

func newRawSocketOn(t testing.TB, ip net.IP) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func serverAddr(t testing.TB, s *Server) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// rawJoin joins with tok (cookie round trip included) and returns the member or the REFUSE.
func rawJoin(t testing.TB, s *Server, tok string) (*rawMember, *wire.Refuse) {
	t.Helper()
	m := &rawMember{t: t, sock: newRawSocket(t), server: serverAddr(t, s)}
	return m, m.handshake(tok)
}

// handshake runs one join from m's socket, sealed to the instance tok names.
func (m *rawMember) handshake(tok string) *wire.Refuse {
	m.t.Helper()
	ins, err := token.UnverifiedServerInstance(tok)
	if err != nil {
		m.t.Fatal(err)
	}
	return m.handshakeIns(ins, tok)
}

// handshakeIns runs one join from m's socket carrying tok (any bytes), sealed to instance ins.
func (m *rawMember) handshakeIns(ins, tok string) *wire.Refuse {
	t := m.t
	t.Helper()
	hs, err := wire.NewInitiator(ins)
	if err != nil {
		t.Fatal(err)
	}
	p, err := hs.Join([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	m.write(p)
	for {
		r := m.read(5 * time.Second)
		typ, _ := wire.PeekType(r)
		switch typ {
		case wire.TypeCookie:
			c, err := wire.ParseCookie(r)
			if err != nil || c.Nonce != hs.Nonce() {
				t.Fatalf("bad COOKIE: %+v %v", c, err)
			}
			wire.SetJoinCookie(p, c.Cookie)
			m.join = p
			m.write(p)
		case wire.TypeAccept:
			a, keys, err := hs.Accept(r)
			if err != nil {
				t.Fatalf("bad ACCEPT: %v", err)
			}
			m.accept, m.keys, m.key, m.raw = a, keys, wire.NewKey(keys), r
			return nil
		case wire.TypeRefuse:
			rf, err := wire.ParseRefuse(r)
			if err != nil || rf.Nonce != hs.Nonce() {
				t.Fatalf("bad REFUSE: %+v %v", rf, err)
			}
			return &rf
		default:
			t.Fatalf("unexpected answer to JOIN: % x", r)
		}
	}
}

func (m *rawMember) write(p []byte) {
	m.t.Helper()
	if _, err := m.sock.WriteToUDPAddrPort(p, m.server); err != nil {
		m.t.Fatal(err)
	}
}

func (m *rawMember) read(within time.Duration) []byte {
	m.t.Helper()
	p, err := tryRead(m.sock, within)
	if err != nil {
		m.t.Fatalf("no datagram within %s: %v", within, err)
	}
	return p
}

func tryRead(sock *net.UDPConn, within time.Duration) ([]byte, error) {
	buf := make([]byte, 65536)
	_ = sock.SetReadDeadline(time.Now().Add(within))
	n, _, err := sock.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func (m *rawMember) packet(t wire.Type, body []byte) []byte {
	m.seq++
	return m.key.Seal(nil, wire.ToServer, wire.Header{Type: t, Member: m.accept.MemberID, Seq: m.seq}, body)
}

func (m *rawMember) send(t wire.Type, body []byte) { m.write(m.packet(t, body)) }

// next reads and authenticates the next server packet.
func (m *rawMember) next(within time.Duration) (wire.Header, []byte) {
	m.t.Helper()
	p := m.read(within)
	h, body, err := m.key.Open(nil, wire.ToClient, p)
	if err != nil {
		m.t.Fatalf("server packet does not authenticate: %v (% x)", err, p)
	}
	if !m.window.Accept(h.Seq) {
		m.t.Fatalf("server sequence %d replayed", h.Seq)
	}
	return h, body
}

// barrier sends KEEPALIVE and waits for the answer: every datagram this server got before it has
// been handled and counted by then (one reader, in order).
func (m *rawMember) barrier() {
	m.t.Helper()
	m.send(wire.TypeKeepalive, nil)
	for {
		h, _ := m.next(2 * time.Second)
		if h.Type == wire.TypeKeepalive {
			return
		}
	}
}
