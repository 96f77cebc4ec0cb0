package gameserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/gameserver/client"
	"github.com/kumi-dev/kumi/gameserver/wire"
)

// The attack suite: each test is one row of gameserver/ATTACKS.md (the table SECURITY.md folds
// in). Attackers are real UDP sockets on 127.0.0.x; nothing is mocked.

// tap is an on-path observer: a UDP forwarder between clients and the server (one upstream
// socket per client, like a NAT) that records every datagram both ways.
type tap struct {
	t      testing.TB
	conn   *net.UDPConn
	server netip.AddrPort
	wg     sync.WaitGroup
	mu     sync.Mutex
	up     map[netip.AddrPort]*net.UDPConn
	seen   [][]byte
}

func startTap(t testing.TB, server netip.AddrPort) *tap {
	t.Helper()
	tp := &tap{t: t, conn: newRawSocket(t), server: server, up: map[netip.AddrPort]*net.UDPConn{}}
	tp.wg.Add(1)
	go tp.fromClients()
	t.Cleanup(func() {
		tp.conn.Close()
		tp.mu.Lock()
		for _, u := range tp.up {
			u.Close()
		}
		tp.mu.Unlock()
		tp.wg.Wait()
	})
	return tp
}

func (tp *tap) addr() string { return tp.conn.LocalAddr().String() }

func (tp *tap) record(p []byte) {
	tp.mu.Lock()
	tp.seen = append(tp.seen, bytes.Clone(p))
	tp.mu.Unlock()
}

func (tp *tap) fromClients() {
	defer tp.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := tp.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		tp.record(buf[:n])
		tp.mu.Lock()
		u := tp.up[from]
		if u == nil {
			var err error
			if u, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
				tp.mu.Unlock()
				return
			}
			tp.up[from] = u
			tp.wg.Add(1)
			go tp.fromServer(u, from)
		}
		tp.mu.Unlock()
		_, _ = u.WriteToUDPAddrPort(buf[:n], tp.server)
	}
}

func (tp *tap) fromServer(u *net.UDPConn, client netip.AddrPort) {
	defer tp.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, _, err := u.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		tp.record(buf[:n])
		_, _ = tp.conn.WriteToUDPAddrPort(buf[:n], client)
	}
}

func (tp *tap) datagrams() [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([][]byte(nil), tp.seen...)
}

// TestAttackEavesdropper: everything between two members and the server passes an observer who
// records it; no datagram contains a payload, any part of a server token, or a session key.
func TestAttackEavesdropper(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-e"), signer)
	tp := startTap(t, serverAddr(t, s))
	proxy := netip.MustParseAddrPort(tp.addr())

	tokA := mint(t, signer, "gs-e", "room", "alice", time.Minute)
	tokB := mint(t, signer, "gs-e", "room", "bob", time.Minute)
	// Alice speaks by hand (so the test holds her session keys); Bob uses the client library.
	alice := &rawMember{t: t, sock: newRawSocket(t), server: proxy}
	if r := alice.handshake(tokA); r != nil {
		t.Fatal(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bob, err := client.Dial(ctx, tp.addr(), tokB, client.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bob.Close() })

	secrets := map[string][]byte{}
	for i := range 5 {
		say := fmt.Sprintf("alice's secret voice frame %d", i)
		secrets[say] = []byte(say)
		alice.send(wire.TypeData, []byte(say))
		if e := recvKind(t, bob, client.EventData); string(e.Payload) != say {
			t.Fatalf("bob heard %q", e.Payload)
		}
		reply := fmt.Sprintf("bob's secret answer %d", i)
		secrets[reply] = []byte(reply)
		if err := bob.Send([]byte(reply)); err != nil {
			t.Fatal(err)
		}
		for {
			h, body := alice.next(5 * time.Second)
			if h.Type == wire.TypeData {
				if string(body) != reply {
					t.Fatalf("alice heard %q", body)
				}
				break
			}
		}
	}
	alice.barrier()
	for i, tok := range []string{tokA, tokB} {
		for j, part := range strings.Split(tok, ".") {
			secrets[fmt.Sprintf("token %d part %d", i, j)] = []byte(part)
		}
	}
	secrets["alice's client→server key"] = alice.keys[:wire.KeyLen]
	secrets["alice's server→client key"] = alice.keys[wire.KeyLen:]

	got := tp.datagrams()
	types := map[wire.Type]int{}
	for _, p := range got {
		types[wire.Type(p[1])]++
		for what, b := range secrets {
			if bytes.Contains(p, b) {
				t.Errorf("the eavesdropper read %s in a %s datagram", what, wire.Type(p[1]))
			}
		}
	}
	// The capture saw the whole exchange, so the check above covered every kind of datagram.
	for _, typ := range []wire.Type{wire.TypeJoin, wire.TypeCookie, wire.TypeAccept, wire.TypeData, wire.TypeKeepalive} {
		if types[typ] == 0 {
			t.Errorf("capture holds no %s (%v)", typ, types)
		}
	}
}

// TestAttackForgedAndReplayedData: sealed packets that were forged, tampered with, or replayed
// (from the member's address or another) are dropped, reach nobody and never move the member.
func TestAttackForgedAndReplayedData(t *testing.T) {
	signer := newSigner(t)
	cfg := testConfig("gs-d")
	// One relay worker: the drop counts are read after the victim's barrier, which orders the
	// attacker's datagram only when one socket reads both (several workers' SO_REUSEPORT
	// sockets split sources between them; TestRelayWorkers covers that).
	cfg.Workers = 1
	s := startServer(t, cfg, signer)
	victim, _ := rawJoin(t, s, mint(t, signer, "gs-d", "s1", "victim", time.Minute))
	peer, _ := rawJoin(t, s, mint(t, signer, "gs-d", "s1", "peer", time.Minute))
	outsider, _ := rawJoin(t, s, mint(t, signer, "gs-d", "s9", "outsider", time.Minute))
	attacker := &rawMember{t: t, sock: newRawSocketOn(t, net.IPv4(127, 0, 0, 66)), server: victim.server}

	captured := victim.packet(wire.TypeData, []byte("captured"))
	victim.write(captured)
	if _, body := peer.next(2 * time.Second); string(body) != "captured" {
		t.Fatalf("peer got %q", body)
	}
	for _, tc := range []struct {
		name   string
		from   *rawMember
		p      []byte
		reason string
	}{
		{"forged with another member's key", attacker,
			outsider.key.Seal(nil, wire.ToServer, wire.Header{Type: wire.TypeData, Member: victim.accept.MemberID, Seq: 1000}, []byte("injected")), "auth"},
		{"tampered ciphertext", attacker, flip(victim.packet(wire.TypeData, []byte("tampered")), wire.HeaderLen), "auth"},
		{"tampered header", attacker, flip(victim.packet(wire.TypeData, []byte("tampered")), 1+4+8), "auth"},
		{"guessed tag", attacker, flip(victim.packet(wire.TypeData, []byte("guess")), -1), "auth"},
		{"replayed from another address", attacker, captured, "replay"},
		{"replayed from the member's address", victim, captured, "replay"},
		{"server-to-client packet reflected", attacker, nil, "auth|replay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			if p == nil {
				// A DATA the server sealed for the peer, sent back to the server.
				victim.send(wire.TypeData, []byte("to reflect"))
				raw := peer.read(2 * time.Second)
				p = bytes.Clone(raw)
				if _, body, err := peer.key.Open(nil, wire.ToClient, raw); err != nil || string(body) != "to reflect" {
					t.Fatalf("peer got %q %v", body, err)
				}
			}
			// The reflected packet fails the window or the tag, depending on sequence numbers.
			count := func() (n uint64) {
				for _, r := range strings.Split(tc.reason, "|") {
					n += s.Stats().Dropped[r]
				}
				return n
			}
			before := count()
			tc.from.write(p)
			victim.barrier()
			if got := count(); got != before+1 {
				t.Fatalf("dropped[%s] = %d, want %d (%v)", tc.reason, got, before+1, s.Stats().Dropped)
			}
			// Nothing reached the peer, and the victim still gets its traffic at its own address.
			peer.send(wire.TypeData, []byte("still yours"))
			if h, body := victim.next(2 * time.Second); h.Type != wire.TypeData || string(body) != "still yours" {
				t.Fatalf("victim got %v %q", h, body)
			}
			victim.send(wire.TypeData, []byte("next"))
			if _, body := peer.next(2 * time.Second); string(body) != "next" {
				t.Fatalf("peer got %q, want the victim's next real packet", body)
			}
		})
	}
	if p, err := tryRead(attacker.sock, 50*time.Millisecond); err == nil {
		t.Fatalf("the attacker received % x", p)
	}
}

func flip(p []byte, i int) []byte {
	if i < 0 {
		i += len(p)
	}
	p[i] ^= 0x01
	return p
}

// TestAttackJoinReplayAndForgery: a JOIN captured on the path and replayed from another address
// neither rebinds the member nor tells the replayer anything it can open; forged JOINs are
// refused.
func TestAttackJoinReplayAndForgery(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-j"), signer)
	victimTok := mint(t, signer, "gs-j", "s1", "victim", time.Minute)
	victim, _ := rawJoin(t, s, victimTok)
	peer, _ := rawJoin(t, s, mint(t, signer, "gs-j", "s1", "peer", time.Minute))
	attacker := &rawMember{t: t, sock: newRawSocketOn(t, net.IPv4(127, 0, 0, 67)), server: victim.server}

	t.Run("replayed with the victim's cookie", func(t *testing.T) {
		// The cookie is bound to the victim's address: the attacker gets a COOKIE, nothing else.
		attacker.write(victim.join)
		p := attacker.read(2 * time.Second)
		if typ, _ := wire.PeekType(p); typ != wire.TypeCookie || len(p) >= len(victim.join) {
			t.Fatalf("answer % x, want a COOKIE smaller than the JOIN", p)
		}
	})
	t.Run("replayed with the attacker's own cookie", func(t *testing.T) {
		j := bytes.Clone(victim.join)
		attacker.write(j)
		ck, err := wire.ParseCookie(attacker.read(2 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		wire.SetJoinCookie(j, ck.Cookie)
		attacker.write(j)
		// The server repeats its ACCEPT (a lost ACCEPT looks the same) ...
		p := attacker.read(2 * time.Second)
		if !bytes.Equal(p, victim.raw) {
			t.Fatalf("answer % x, want the victim's ACCEPT again", p)
		}
		// ... which is sealed to the victim's ephemeral key: worthless to the attacker. And the
		// member stays at the victim's address.
		peer.send(wire.TypeData, []byte("for the victim"))
		if h, body := victim.next(2 * time.Second); h.Type != wire.TypeData || string(body) != "for the victim" {
			t.Fatalf("victim got %v %q", h, body)
		}
		if p, err := tryRead(attacker.sock, 50*time.Millisecond); err == nil {
			t.Fatalf("the replayer received % x", p)
		}
	})
	for _, tc := range []struct {
		name string
		tok  string
		ins  string
		want wire.RefuseCode
	}{
		{"forged token", "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", s.Instance(), wire.RefuseBadToken},
		// Someone who stole the victim's (used) token seals it in a JOIN of their own.
		{"stolen token re-sealed by someone else", victimTok, s.Instance(), wire.RefuseReplayed},
		{"sealed to another instance", mint(t, signer, "gs-j", "s2", "x", time.Minute), otherInstance(t), wire.RefuseWrongInstance},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &rawMember{t: t, sock: newRawSocketOn(t, net.IPv4(127, 0, 0, 68)), server: victim.server}
			if r := m.handshakeIns(tc.ins, tc.tok); r == nil || r.Code != tc.want {
				t.Fatalf("refusal %+v, want %s", r, tc.want)
			}
		})
	}
	if st := s.Stats(); st.Members != 2 {
		t.Fatalf("members = %d, want 2", st.Members)
	}
}

// TestAttackSpoofedJoinFlood: while JOINs flood in from many source addresses and ports on
// 127.0.0.x — blind senders that never see a reply (as with forged source addresses) and senders
// that do complete the cookie round trip but carry bad tokens — a legitimate player still joins.
func TestAttackSpoofedJoinFlood(t *testing.T) {
	signer := newSigner(t)
	cfg := testConfig("gs-f")
	// A small overall budget, so that without per-source buckets the cookie-holding flooders
	// alone would use all of it: 20 sources × 5/s = 100/s of a 200/s budget.
	cfg.JoinRate, cfg.JoinBurst = 200, 50
	cfg.JoinSourceRate, cfg.JoinSourceBurst = 5, 5
	s := startServer(t, cfg, signer)
	server := serverAddr(t, s)
	// A well-formed JOIN sealed to this instance around a token that is not one.
	hs, err := wire.NewInitiator(s.Instance())
	if err != nil {
		t.Fatal(err)
	}
	bogus, err := hs.Join([]byte(strings.Repeat("x", 300)))
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, sentBytes atomic.Uint64
	flood := func(ip net.IP, cookies bool) {
		sock := newRawSocketOn(t, ip)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := bytes.Clone(bogus)
			if cookies {
				// Complete the round trip once: this source does receive replies.
				_, _ = sock.WriteToUDPAddrPort(p, server)
				if r, err := tryRead(sock, 5*time.Second); err == nil {
					if ck, err := wire.ParseCookie(r); err == nil {
						wire.SetJoinCookie(p, ck.Cookie)
					}
				}
			} else {
				binary.BigEndian.PutUint64(p[len(p)-8:], uint64(ip[15])) // a made-up cookie
			}
			// 50 JOINs a second each, ten times a source's budget: the attack is on admission,
			// not on the machine's packet rate (no protocol survives a flood faster than the
			// server can read; that is the network's job).
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := sock.WriteToUDPAddrPort(p, server); err != nil {
					return
				}
				sent.Add(1)
				sentBytes.Add(uint64(len(p)))
			}
		}()
	}
	for i := range 40 {
		flood(net.IPv4(127, 0, 1, byte(10+i)), false) // blind: never reads
	}
	for i := range 20 {
		flood(net.IPv4(127, 0, 2, byte(10+i)), true)
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
	eventually(t, 30*time.Second, "the flood under way", func() bool {
		return s.m.cookies.Load() > 500 && s.m.sourceLimited.Load() > 100
	})

	// The legitimate player, from its own address, with the client library's normal retries.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc := client.Default()
	cc.JoinTimeout = 30 * time.Second
	c, err := client.Dial(ctx, s.Addr(), mint(t, signer, "gs-f", "s1", "legit", time.Minute), cc)
	if err != nil {
		t.Fatalf("legitimate player locked out by the flood: %v (stats %+v, cookies %d, source-limited %d)", err, s.Stats(), s.m.cookies.Load(), s.m.sourceLimited.Load())
	}
	defer c.Close()
	if st := s.Stats(); st.Members != 1 {
		t.Fatalf("members = %d, want only the legitimate player", st.Members)
	}
	// The blind sources cost the server no verification: only the 20 cookie holders' JOINs were
	// ever opened, each within its source's budget.
	t.Logf("flood: %d JOINs (%d bytes); %d COOKIEs, %d refused by their source's bucket, %d opened (bad_token)",
		sent.Load(), sentBytes.Load(), s.m.cookies.Load(), s.m.sourceLimited.Load(), s.m.joins[wire.RefuseBadToken].Load())
}

// TestAttackNoAmplification: no datagram that is not sealed with a member's key gets an answer
// larger than itself, so a forged source address cannot turn the server into an amplifier.
func TestAttackNoAmplification(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-a"), signer)
	hs, err := wire.NewInitiator(s.Instance())
	if err != nil {
		t.Fatal(err)
	}
	join, err := hs.Join([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	v1 := append([]byte{wire.VersionV1, byte(wire.TypeJoin)}, make([]byte, wire.NonceLen+2+1)...)
	for _, tc := range []struct {
		name   string
		p      []byte
		answer bool
	}{
		{"smallest JOIN, no cookie", join, true},
		{"v1 JOIN", v1, true},
		{"v1 JOIN shorter than a REFUSE", v1[:wire.RefuseLen("")-1], false},
		{"COOKIE sent to the server", wire.AppendCookie(nil, wire.Cookie{}), false},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &rawMember{t: t, sock: newRawSocket(t), server: serverAddr(t, s)}
			m.write(tc.p)
			p, err := tryRead(m.sock, 300*time.Millisecond)
			switch {
			case err != nil && tc.answer:
				t.Fatal("no answer")
			case err == nil && !tc.answer:
				t.Fatalf("answered % x", p)
			case err == nil && len(p) > len(tc.p):
				t.Fatalf("answer of %d bytes to %d", len(p), len(tc.p))
			}
		})
	}
}

// TestAttackStolenTokenAfterRestart: a server token stolen before the game server's container
// restarted (same server name, new process) is refused by the new process however it is sent:
// sealed to the old instance, as the token says, or re-sealed to the new one.
func TestAttackStolenTokenAfterRestart(t *testing.T) {
	signer := newSigner(t)
	ctx, cancel := context.WithCancel(context.Background())
	old, err := Start(ctx, testLog(t), testConfig("gs-r"), nil, WithVerifier(signer.Verifier("", time.Second)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stolen := mintIns(t, signer, "gs-r", old.Instance(), "s1", "victim", time.Minute)
	used := mintIns(t, signer, "gs-r", old.Instance(), "s1", "other", time.Minute)
	m, _ := rawJoin(t, old, used) // admitted once in the old life
	_ = m
	cancel()
	if err := old.Wait(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig("gs-r")
	cfg.ListenAddr = old.Addr() // the restarted container comes back on the same address
	restarted := startServer(t, cfg, signer)
	if restarted.Instance() == old.Instance() {
		t.Fatal("the restarted server kept its instance")
	}
	for _, tc := range []struct {
		name, tok, ins string
	}{
		{"unused token sealed to the old instance", stolen, old.Instance()},
		{"unused token re-sealed to the new instance", stolen, restarted.Instance()},
		{"used token re-sealed to the new instance", used, restarted.Instance()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &rawMember{t: t, sock: newRawSocketOn(t, net.IPv4(127, 0, 0, 69)), server: serverAddr(t, restarted)}
			if r := a.handshakeIns(tc.ins, tc.tok); r == nil || r.Code != wire.RefuseWrongInstance {
				t.Fatalf("refusal %+v, want wrong_instance", r)
			}
		})
	}
	// A token minted for the new life works.
	dial(t, restarted, mint(t, signer, "gs-r", "s1", "victim", time.Minute))
	if st := restarted.Stats(); st.Members != 1 {
		t.Fatalf("members = %d", st.Members)
	}
}

// TestAttackV1Client: a client of protocol v1 gets a REFUSE version in v1's own format, with a
// text saying what to do, no longer than its JOIN.
func TestAttackV1Client(t *testing.T) {
	signer := newSigner(t)
	s := startServer(t, testConfig("gs-v"), signer)
	tok := mint(t, signer, "gs-v", "s1", "old-client", time.Minute)
	// v1's JOIN: version 1, type, nonce, token length, token.
	nonce := [wire.NonceLen]byte{1, 1, 2, 3, 5, 8, 13, 21}
	join := append([]byte{wire.VersionV1, byte(wire.TypeJoin)}, nonce[:]...)
	join = binary.BigEndian.AppendUint16(join, uint16(len(tok)))
	join = append(join, tok...)
	m := &rawMember{t: t, sock: newRawSocket(t), server: serverAddr(t, s)}
	m.write(join)
	p := m.read(2 * time.Second)
	if len(p) > len(join) {
		t.Fatalf("REFUSE of %d bytes answers a JOIN of %d", len(p), len(join))
	}
	// Parse it the way v1 did: byte 0 is 1, and the rest is the same layout as v2's REFUSE.
	if p[0] != wire.VersionV1 {
		t.Fatalf("answer in version %d, want the v1 client's own", p[0])
	}
	v2 := append([]byte{wire.Version}, p[1:]...)
	r, err := wire.ParseRefuse(v2)
	if err != nil || r.Code != wire.RefuseVersion || r.Nonce != nonce || !strings.Contains(r.Text, "v2") {
		t.Fatalf("answer % x: %+v %v, want REFUSE version naming v2", p, r, err)
	}
	if st := s.Stats(); st.Members != 0 || s.m.joins[wire.RefuseVersion].Load() != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !errors.Is(func() error { _, err := wire.PeekType(p); return err }(), wire.ErrVersion) {
		t.Fatal("a v2 parser took the v1 answer")
	}
}
