package gameserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/gameserver/client"
	"github.com/kumi-dev/kumi/gameserver/wire"
)

func dial(t testing.TB, s *Server, tok string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.Addr(), tok, client.Default())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recvKind(t testing.TB, c *client.Conn, kind client.EventKind) client.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		e, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", kind, err)
		}
		if e.Kind == kind {
			return e
		}
		if e.Kind != client.EventData {
			t.Fatalf("waiting for %s, got %+v", kind, e)
		}
	}
}

func TestRelay(t *testing.T) {
	for _, io := range []string{IOBatch, IOSingle} {
		t.Run(io, func(t *testing.T) {
			signer := newSigner(t)
			cfg := testConfig("gs-1")
			cfg.IO = io
			s := startServer(t, cfg, signer)
			a1 := dial(t, s, mint(t, signer, "gs-1", "room-a", "p1", time.Minute))
			a2 := dial(t, s, mint(t, signer, "gs-1", "room-a", "p2", time.Minute))
			a3 := dial(t, s, mint(t, signer, "gs-1", "room-a", "p3", time.Minute))
			b1 := dial(t, s, mint(t, signer, "gs-1", "room-b", "p4", time.Minute))
			b2 := dial(t, s, mint(t, signer, "gs-1", "room-b", "p5", time.Minute))

			if err := a1.Send([]byte("hello a")); err != nil {
				t.Fatal(err)
			}
			if err := b2.Send([]byte("hello b")); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*client.Conn{a2, a3} {
				e := recvKind(t, c, client.EventData)
				if string(e.Payload) != "hello a" || e.From != a1.MemberID() {
					t.Fatalf("got %q from %d, want %q from %d", e.Payload, e.From, "hello a", a1.MemberID())
				}
			}
			// Session isolation: b1's first DATA is its own session's, never room-a's.
			if e := recvKind(t, b1, client.EventData); string(e.Payload) != "hello b" {
				t.Fatalf("b1 got %q", e.Payload)
			}
			st := s.Stats()
			if st.Sessions != 2 || st.Members != 5 {
				t.Fatalf("stats %+v", st)
			}
			// Oversized payloads are refused by the client library before they leave.
			if err := a1.Send(make([]byte, cfg.MaxPayload+1)); err == nil {
				t.Fatal("oversized payload sent")
			}
		})
	}
}

func TestJoinRefusals(t *testing.T) {
	signer := newSigner(t)
	other := newSigner(t)
	cfg := testConfig("gs-1")
	cfg.Capacity = 2
	cfg.MaxMembers = 2
	s := startServer(t, cfg, signer)

	used := mint(t, signer, "gs-1", "s1", "p1", time.Minute)
	dial(t, s, used)
	dial(t, s, mint(t, signer, "gs-1", "s2", "p1", time.Minute))
	dial(t, s, mint(t, signer, "gs-1", "s2", "p2", time.Minute))

	for _, tc := range []struct {
		name string
		tok  string
		want wire.RefuseCode
	}{
		{"replayed token", used, wire.RefuseReplayed},
		{"token for another server", mintIns(t, signer, "gs-2", s.Instance(), "s1", "p9", time.Minute), wire.RefuseWrongServer},
		{"token for another instance", mintIns(t, signer, "gs-1", otherInstance(t), "s1", "p9", time.Minute), wire.RefuseWrongInstance},
		{"expired token", mint(t, signer, "gs-1", "s1", "p9", -10*time.Second), wire.RefuseExpired},
		{"signed by an unknown key", mint(t, other, "gs-1", "s1", "p9", time.Minute), wire.RefuseBadToken},
		{"capacity full", mint(t, signer, "gs-1", "s3", "p9", time.Minute), wire.RefuseFull},
		{"session full", mint(t, signer, "gs-1", "s2", "p9", time.Minute), wire.RefuseSessionFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Dial(context.Background(), s.Addr(), tc.tok, client.Default())
			var re *client.RefusedError
			if !errors.As(err, &re) || re.Code != tc.want {
				t.Fatalf("err = %v, want refusal %s", err, tc.want)
			}
		})
	}
	// Garbage sealed properly to this instance (the client library cannot send it).
	garbage := &rawMember{t: t, sock: newRawSocket(t), server: serverAddr(t, s)}
	if r := garbage.handshakeIns(s.Instance(), "garbage"); r == nil || r.Code != wire.RefuseBadToken {
		t.Fatalf("not a JWT: %+v, want refusal bad_token", r)
	}
	if st := s.Stats(); st.Sessions != 2 || st.Members != 3 {
		t.Fatalf("refusals changed state: %+v", st)
	}
}

// A lost ACCEPT is answered again for the same JOIN (same nonce and ephemeral key), but the token
// is still single use.
func TestJoinRetransmitIdempotent(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-1"), signer)
	tok := mint(t, signer, "gs-1", "s1", "p1", time.Minute)
	m, refused := rawJoin(t, s, tok)
	if refused != nil {
		t.Fatal(refused)
	}
	m.write(m.join)
	if again := m.read(2 * time.Second); !bytes.Equal(again, m.raw) {
		t.Fatalf("retransmitted JOIN answered % x, want the same ACCEPT % x", again, m.raw)
	}
	if st := s.Stats(); st.Members != 1 {
		t.Fatalf("members = %d, want 1", st.Members)
	}
	_, err := client.Dial(context.Background(), s.Addr(), tok, client.Default())
	var re *client.RefusedError
	if !errors.As(err, &re) || re.Code != wire.RefuseReplayed {
		t.Fatalf("other JOIN with the token: %v, want replayed", err)
	}
}

// otherInstance is the id of an instance no server runs (e.g. a server's previous life).
func otherInstance(t testing.TB) string {
	t.Helper()
	in, err := wire.NewInstance()
	if err != nil {
		t.Fatal(err)
	}
	return in.ID()
}

// Off-path attackers can send from any source address but see no traffic: forged packets naming a
// victim's member id must neither reach the session nor redirect the victim's traffic.
func TestSpoofedSource(t *testing.T) {
	for _, io := range []string{IOBatch, IOSingle} {
		t.Run(io, func(t *testing.T) {
			signer := newSigner(t)
			cfg := testConfig("gs-1")
			cfg.IO = io
			// One relay worker, so the victim's barrier also orders the forger's datagrams
			// before the drop counts are read (see TestAttackForgedAndReplayedData).
			cfg.Workers = 1
			s := startServer(t, cfg, signer)
			victim, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "victim", time.Minute))
			peer, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "peer", time.Minute))
			attacker, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s9", "attacker", time.Minute))
			forger := &rawMember{t: t, sock: newRawSocket(t), server: victim.server}

			// 1. Victim's member id, attacker's key (the attacker knows only its own key).
			forged := attacker.key.Seal(nil, wire.ToServer, wire.Header{Type: wire.TypeData, Member: victim.accept.MemberID, Seq: 1000}, []byte("injected"))
			forger.write(forged)
			// 2. A guessed tag.
			guess := bytes.Clone(forged)
			guess[len(guess)-1] ^= 1
			forger.write(guess)
			// 3. A replay of a real victim packet from another address (as if captured).
			real := victim.packet(wire.TypeData, []byte("real"))
			victim.write(real)
			if h, body := peer.next(2 * time.Second); h.Type != wire.TypeData || string(body) != "real" || h.Member != victim.accept.MemberID {
				t.Fatalf("peer got %v %q", h, body)
			}
			forger.write(real)

			// The victim's address must still be its own: data from the peer reaches it.
			peer.send(wire.TypeData, []byte("to victim"))
			if h, body := victim.next(2 * time.Second); h.Type != wire.TypeData || string(body) != "to victim" {
				t.Fatalf("victim got %v %q", h, body)
			}
			victim.barrier()
			st := s.Stats()
			if st.Dropped["auth"] != 2 || st.Dropped["replay"] != 1 {
				t.Fatalf("dropped = %v, want auth 2, replay 1", st.Dropped)
			}
			// Nothing injected reached the peer: its next packet is the victim's next real one.
			victim.send(wire.TypeData, []byte("after"))
			if _, body := peer.next(2 * time.Second); string(body) != "after" {
				t.Fatalf("peer got %q, want \"after\"", body)
			}
		})
	}
}

func TestMalformedPackets(t *testing.T) {
	signer := newSigner(t)
	cfg := testConfig("gs-1")
	s := startServer(t, cfg, signer)
	m, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "p1", time.Minute))
	peer, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "p2", time.Minute))

	join := m.join
	for _, tc := range []struct {
		name   string
		p      []byte
		reason string
	}{
		{"empty", []byte{}, "short"},
		{"one byte", []byte{wire.Version}, "short"},
		{"other version", []byte{9, byte(wire.TypeData), 0, 0, 0, 0}, "version"},
		{"unknown type", []byte{wire.Version, 0x7f, 1, 2, 3}, "unknown_type"},
		{"truncated JOIN", join[:len(join)-1], "malformed_join"},
		{"truncated DATA", m.packet(wire.TypeData, []byte("x"))[:wire.Overhead-1], "short"},
		{"unknown member", m.key.Seal(nil, wire.ToServer, wire.Header{Type: wire.TypeData, Member: m.accept.MemberID + 1, Seq: 1}, nil), "unknown_member"},
		{"oversized datagram", make([]byte, cfg.maxDatagram()+1), "oversized"},
		{"oversized DATA", m.packet(wire.TypeData, make([]byte, cfg.MaxPayload+1)), "oversized"},
		{"server type from a client", m.packet(wire.TypeMove, nil), "bad_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats().Dropped[tc.reason]
			m.write(tc.p)
			m.barrier()
			if got := s.Stats().Dropped[tc.reason]; got != before+1 {
				t.Fatalf("dropped[%s] = %d, want %d (all: %v)", tc.reason, got, before+1, s.Stats().Dropped)
			}
		})
	}
	// Still relaying after all that.
	m.send(wire.TypeData, []byte("ok"))
	if _, body := peer.next(2 * time.Second); string(body) != "ok" {
		t.Fatalf("peer got %q", body)
	}
}

// A JOIN of a future protocol version gets REFUSE version, never larger than the JOIN itself (a
// forged source address must not turn the server into an amplifier). v1: see TestAttackV1Client.
func TestOtherVersionJoin(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-1"), signer)
	m, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "p1", time.Minute))
	nonce := [wire.NonceLen]byte{9, 8, 7, 6, 5, 4, 3, 2}
	join := append([]byte{wire.Version + 1, byte(wire.TypeJoin)}, nonce[:]...)

	// Shorter than the answer would be: dropped without a word. barrier fails on any datagram
	// that does not authenticate, such as a REFUSE.
	before := s.Stats().Dropped["version"]
	m.write(join)
	m.barrier()
	if got := s.Stats().Dropped["version"]; got != before+1 {
		t.Fatalf("dropped[version] = %d, want %d", got, before+1)
	}

	long := append(join, 0, 0, 'x')
	m.write(long)
	p := m.read(2 * time.Second)
	r, err := wire.ParseRefuse(p)
	if err != nil || r.Code != wire.RefuseVersion || r.Nonce != nonce {
		t.Fatalf("answer % x: %+v %v, want REFUSE version with the JOIN's nonce", p, r, err)
	}
	if len(p) > len(long) {
		t.Fatalf("REFUSE of %d bytes answers a JOIN of %d", len(p), len(long))
	}
}

func TestMemberTimeoutAndKeepalive(t *testing.T) {
	signer := newSigner(t)
	cfg := testConfig("gs-1")
	cfg.Keepalive = 50 * time.Millisecond
	cfg.MemberTimeout = 400 * time.Millisecond
	s := startServer(t, cfg, signer)
	silent, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "silent", time.Minute))
	alive := dial(t, s, mint(t, signer, "gs-1", "s1", "alive", time.Minute))
	start := time.Now()

	// Keepalive answered with an authenticated KEEPALIVE.
	silent.send(wire.TypeKeepalive, nil)
	if h, _ := silent.next(time.Second); h.Type != wire.TypeKeepalive {
		t.Fatalf("got %v, want KEEPALIVE", h)
	}
	// Then silence: RECONNECT(timeout) after member-timeout.
	h, body := silent.next(3 * time.Second)
	r, err := wire.ParseReconnect(body)
	if h.Type != wire.TypeReconnect || err != nil || r.Code != wire.ReconnectTimeout {
		t.Fatalf("got %v %+v %v, want RECONNECT timeout", h, r, err)
	}
	if el := time.Since(start); el < cfg.MemberTimeout {
		t.Fatalf("timed out after %s, before member-timeout %s", el, cfg.MemberTimeout)
	}
	// The client library's keepalives keep its member in.
	eventually(t, 2*time.Second, "silent member removed", func() bool { return s.Stats().Members == 1 })
	if err := alive.Send([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	if s.m.left[leaveTimeout].Load() != 1 {
		t.Fatalf("timeouts = %d", s.m.left[leaveTimeout].Load())
	}
}

func TestLeaveEndsSession(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-1"), signer)
	c1 := dial(t, s, mint(t, signer, "gs-1", "s1", "p1", time.Minute))
	c2 := dial(t, s, mint(t, signer, "gs-1", "s1", "p2", time.Minute))
	if err := c1.Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "one member left", func() bool { return s.Stats().Members == 1 })
	if s.Stats().Sessions != 1 {
		t.Fatal("session ended with a member left")
	}
	if err := c2.Leave(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "session ended", func() bool { return s.Stats().Sessions == 0 })
	if got := s.m.left[leaveLeft].Load(); got != 2 {
		t.Fatalf("left = %d", got)
	}
	if err := c1.Send([]byte("x")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("send after leave: %v", err)
	}
}

// The same player joining again (new token) replaces the old member, who is told RECONNECT.
func TestRejoinReplaces(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-1"), signer)
	old := dial(t, s, mint(t, signer, "gs-1", "s1", "p1", time.Minute))
	dial(t, s, mint(t, signer, "gs-1", "s1", "p1", time.Minute))
	if e := recvKind(t, old, client.EventReconnect); e.Code != wire.ReconnectReplaced {
		t.Fatalf("got %+v", e)
	}
	if st := s.Stats(); st.Members != 1 || st.Sessions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMemberRateLimit(t *testing.T) {
	signer := newSigner(t)
	cfg := testConfig("gs-1")
	cfg.MemberRate, cfg.MemberBurst = 1, 5 // refill is negligible over this test
	s := startServer(t, cfg, signer)
	m, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "p1", time.Minute))
	peer, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "p2", time.Minute))
	for range 8 {
		m.send(wire.TypeData, []byte("x"))
	}
	m.barrier()
	if got := s.Stats().Dropped["rate_limited"]; got < 2 || got > 3 {
		t.Fatalf("rate_limited = %d, want 3 (2 if a token refilled)", got)
	}
	for range 5 {
		if h, _ := peer.next(time.Second); h.Type != wire.TypeData {
			t.Fatalf("peer got %v", h)
		}
	}
}

// REFUSE busy is transient: the client keeps resending its JOIN until the rate limit admits it.
func TestJoinBusyRetried(t *testing.T) {
	signer := newSigner(t)
	cfg := testConfig("gs-1")
	// One JOIN per 200 ms: the next dial comes sooner even on a loaded machine (at 20/s, a dial
	// slower than 50 ms found a token refilled and the test exercised nothing).
	cfg.JoinRate, cfg.JoinBurst = 5, 1
	s := startServer(t, cfg, signer)
	for i := range 4 {
		dial(t, s, mint(t, signer, "gs-1", "s1", fmt.Sprint("p", i), time.Minute))
	}
	if busy := s.m.joins[wire.RefuseBusy].Load(); busy == 0 {
		t.Fatal("no JOIN was refused busy; the test did not exercise the rate limit")
	}
	if st := s.Stats(); st.Members != 4 {
		t.Fatalf("members %d", st.Members)
	}
}

// An authenticated packet from a new source address (the client's NAT mapping changed) moves the
// member there; the spoofing test shows unauthenticated ones never do.
func TestAddressRebinding(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-1"), signer)
	m, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "p1", time.Minute))
	peer, _ := rawJoin(t, s, mint(t, signer, "gs-1", "s1", "p2", time.Minute))
	oldSock := m.sock
	m.sock = newRawSocket(t) // same member, same key, new address
	m.barrier()
	peer.send(wire.TypeData, []byte("to new address"))
	if h, body := m.next(2 * time.Second); h.Type != wire.TypeData || string(body) != "to new address" {
		t.Fatalf("got %v %q", h, body)
	}
	if p, err := tryRead(oldSock, 50*time.Millisecond); err == nil {
		t.Fatalf("old address still gets traffic: % x", p)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"listen address", func(c *Config) { c.ListenAddr = "7777" }, "listen-addr"},
		{"capacity", func(c *Config) { c.Capacity = 0 }, "capacity"},
		{"io mode", func(c *Config) { c.IO = "magic" }, "io"},
		{"timeouts", func(c *Config) { c.MemberTimeout = c.Keepalive }, "member-timeout"},
		// Nanosecond timers would reach the client as 0 ms and made the sweep ticker panic.
		{"sub-millisecond keepalive", func(c *Config) { c.Keepalive, c.MemberTimeout = time.Nanosecond, 3*time.Nanosecond }, "keepalive"},
		{"payload", func(c *Config) { c.MaxPayload = 70000 }, "max-payload"},
		{"name without SDK", func(c *Config) { c.Name = "" }, "name must be set"},
		{"director address", func(c *Config) { c.Director = "director" }, "director"},
		{"member rate", func(c *Config) { c.MemberRate, c.MemberBurst = 10, 0 }, "member-burst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}
