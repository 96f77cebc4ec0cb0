package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func testKey(b byte) *Key {
	var raw SessionKeys
	for i := range raw {
		raw[i] = b + byte(i)
	}
	return NewKey(raw)
}

func newInstance(t testing.TB) *Instance {
	t.Helper()
	in, err := NewInstance()
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// testJoin is a JOIN of token sealed to in, and its initiator.
func testJoin(t testing.TB, in *Instance, token string) (*Initiator, []byte) {
	t.Helper()
	hs, err := NewInitiator(in.ID())
	if err != nil {
		t.Fatal(err)
	}
	p, err := hs.Join([]byte(token))
	if err != nil {
		t.Fatal(err)
	}
	return hs, p
}

// The whole handshake: JOIN opens only at its instance, ACCEPT only at its initiator, and both
// ends derive the same session keys.
func TestHandshake(t *testing.T) {
	in := newInstance(t)
	hs, p := testJoin(t, in, "header.claims.sig")
	if bytes.Contains(p, []byte("claims")) {
		t.Fatal("token in clear in the JOIN")
	}
	j, err := ParseJoin(p)
	if err != nil {
		t.Fatal(err)
	}
	if j.Nonce != hs.Nonce() || j.Instance != in.Tag() {
		t.Fatalf("join %+v", j)
	}
	if _, _, err := newInstance(t).Open(j); !errors.Is(err, ErrInstance) {
		t.Fatalf("other instance: %v, want ErrInstance", err)
	}
	r, tok, err := in.Open(j)
	if err != nil || string(tok) != "header.claims.sig" {
		t.Fatalf("open = %q %v", tok, err)
	}
	want := Accept{MemberID: 0xdeadbeef, Keepalive: 2 * time.Second, Timeout: 10 * time.Second, MaxPayload: 1200}
	acc, skeys, err := r.Accept(want)
	if err != nil || len(acc) != AcceptLen || len(acc) >= len(p) {
		t.Fatalf("accept %d bytes (JOIN %d): %v", len(acc), len(p), err)
	}
	got, ckeys, err := hs.Accept(acc)
	if err != nil || got != want || ckeys != skeys {
		t.Fatalf("client accept = %+v %v, keys equal %v", got, err, ckeys == skeys)
	}
	// Another join's initiator (or a flipped bit) cannot open it.
	other, _ := testJoin(t, in, "x")
	if _, _, err := other.Accept(acc); err == nil {
		t.Fatal("other initiator opened the ACCEPT")
	}
	for i := 2 + NonceLen; i < len(acc); i++ {
		q := bytes.Clone(acc)
		q[i] ^= 1
		if _, _, err := hs.Accept(q); err == nil {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
	// A tampered JOIN (any byte the seal covers) does not open.
	for _, i := range []int{2, 2 + NonceLen + InstanceLen, joinAD + 1} {
		q := bytes.Clone(p)
		q[i] ^= 1
		jq, err := ParseJoin(q)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := in.Open(jq); err == nil {
			t.Fatalf("tampered byte %d opened", i)
		}
	}
}

func TestJoinCookieField(t *testing.T) {
	in := newInstance(t)
	_, p := testJoin(t, in, "tok")
	c := [CookieLen]byte{1, 2, 3}
	SetJoinCookie(p, c)
	j, err := ParseJoin(p)
	if err != nil || j.Cookie != c {
		t.Fatalf("cookie = %x %v", j.Cookie, err)
	}
	// The cookie is outside the seal: setting it keeps the JOIN valid.
	if _, _, err := in.Open(j); err != nil {
		t.Fatal(err)
	}
	q, err := AppendJoin(nil, j)
	if err != nil || !bytes.Equal(p, q) {
		t.Fatalf("re-encode: %v", err)
	}
}

func TestCookies(t *testing.T) {
	secret := NewCookieSecret()
	c := NewCookies(secret)
	now := time.Unix(1000000, 0)
	a := netip.MustParseAddrPort("127.0.0.1:4000")
	ck := c.Make(a, now)
	for _, tc := range []struct {
		name string
		from netip.AddrPort
		at   time.Time
		ok   bool
	}{
		{"same source", a, now, true},
		{"v4-mapped form of the source", netip.MustParseAddrPort("[::ffff:127.0.0.1]:4000"), now, true},
		{"next epoch", a, now.Add(CookieBucket), true},
		{"two epochs later", a, now.Add(2 * CookieBucket), false},
		{"other port", netip.MustParseAddrPort("127.0.0.1:4001"), now, false},
		{"other address", netip.MustParseAddrPort("127.0.0.2:4000"), now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewCookies(secret).Check(tc.from, ck, tc.at); got != tc.ok {
				t.Fatalf("Check = %v, want %v", got, tc.ok)
			}
		})
	}
	if NewCookies(NewCookieSecret()).Check(a, ck, now) {
		t.Fatal("cookie valid under another secret")
	}
}

func TestParseErrors(t *testing.T) {
	_, join := testJoin(t, newInstance(t), "tok")
	ck := AppendCookie(nil, Cookie{})
	ref := AppendRefuse(nil, Refuse{Code: RefuseFull, Text: "full"})
	huge := bytes.Clone(join)
	huge[joinAD-2], huge[joinAD-1] = 0xff, 0xff
	zero := bytes.Clone(join)
	zero[joinAD-2], zero[joinAD-1] = 0, 0
	for _, tc := range []struct {
		name  string
		parse func([]byte) error
		in    []byte
		want  error
	}{
		{"join empty", pj, nil, ErrShort},
		{"join v1", pj, append([]byte{VersionV1}, join[1:]...), ErrVersion},
		{"join type", pj, ck, ErrType},
		{"join truncated", pj, join[:len(join)-1], ErrShort},
		{"join trailing", pj, append(bytes.Clone(join), 0), ErrTrailing},
		{"join zero token", pj, zero, ErrTooLarge},
		{"join huge token", pj, huge, ErrTooLarge},
		{"join too long", pj, append(bytes.Clone(join), make([]byte, MaxJoinLen)...), ErrTooLarge},
		{"cookie truncated", pc, ck[:len(ck)-1], ErrShort},
		{"cookie trailing", pc, append(bytes.Clone(ck), 1), ErrTrailing},
		{"accept truncated", pa, append([]byte{Version, byte(TypeAccept)}, make([]byte, 10)...), ErrShort},
		{"refuse truncated", pr, ref[:len(ref)-1], ErrShort},
		{"refuse trailing", pr, append(bytes.Clone(ref), 1), ErrTrailing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.parse(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func pj(p []byte) error { _, err := ParseJoin(p); return err }
func pc(p []byte) error { _, err := ParseCookie(p); return err }
func pa(p []byte) error { _, err := ParseAcceptHeader(p); return err }
func pr(p []byte) error { _, err := ParseRefuse(p); return err }

func TestRefuseRoundTrip(t *testing.T) {
	r := Refuse{Nonce: [NonceLen]byte{3}, Code: RefuseDraining, Text: strings.Repeat("x", 300)}
	p := AppendRefuse(nil, r)
	gr, err := ParseRefuse(p)
	if err != nil || gr.Code != RefuseDraining || len(gr.Text) != MaxText || gr.Nonce != r.Nonce || len(p) != RefuseLen(r.Text) {
		t.Fatalf("refuse = %+v, %v", gr, err)
	}
	v1 := AppendRefuseVersion(nil, VersionV1, Refuse{Code: RefuseVersion, Text: "update"})
	if v1[0] != VersionV1 || !bytes.Equal(v1[1:], AppendRefuse(nil, Refuse{Code: RefuseVersion, Text: "update"})[1:]) {
		t.Fatalf("v1 refuse % x", v1)
	}
}

func TestSealOpen(t *testing.T) {
	k := testKey(1)
	h := Header{Type: TypeData, Member: 42, Seq: 7}
	p := k.Seal(nil, ToServer, h, []byte("voice"))
	if len(p) != Overhead+5 {
		t.Fatalf("len = %d", len(p))
	}
	if bytes.Contains(p, []byte("voice")) {
		t.Fatal("body in clear")
	}
	gh, body, err := k.Open(nil, ToServer, bytes.Clone(p))
	if err != nil || gh != h || string(body) != "voice" {
		t.Fatalf("open = %+v %q %v", gh, body, err)
	}
	// Wrong direction, wrong key, any flipped bit: all refused.
	if _, _, err := k.Open(nil, ToClient, bytes.Clone(p)); !errors.Is(err, ErrAuth) {
		t.Fatalf("other direction: %v", err)
	}
	if _, _, err := testKey(2).Open(nil, ToServer, bytes.Clone(p)); !errors.Is(err, ErrAuth) {
		t.Fatalf("other key: %v", err)
	}
	for i := range p {
		q := bytes.Clone(p)
		q[i] ^= 0x40
		if _, _, err := k.Open(nil, ToServer, q); err == nil {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
	if _, _, err := k.Open(nil, ToServer, p[:Overhead-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
}

// v1 sealing (the benchmark's baseline) authenticates without encrypting.
func TestV1Key(t *testing.T) {
	var raw SessionKeys
	k := NewV1Key(raw)
	p := k.Seal(nil, ToServer, Header{Type: TypeData, Member: 1, Seq: 1}, []byte("clear"))
	if !bytes.Contains(p, []byte("clear")) {
		t.Fatal("v1 sealing encrypted")
	}
	if _, body, err := k.Open(nil, ToServer, p); err != nil || string(body) != "clear" {
		t.Fatalf("open: %q %v", body, err)
	}
	p[HeaderLen] ^= 1
	if _, _, err := k.Open(nil, ToServer, p); err == nil {
		t.Fatal("tampered v1 packet opened")
	}
}

func TestMoveReconnect(t *testing.T) {
	b, err := AppendMove(nil, Move{Addr: "127.0.0.1:7777", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMove(b)
	if err != nil || m.Addr != "127.0.0.1:7777" || m.Token != "tok" {
		t.Fatalf("move = %+v %v", m, err)
	}
	if _, err := ParseMove(b[:len(b)-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("short move: %v", err)
	}
	if _, err := AppendMove(nil, Move{Addr: "", Token: "t"}); err == nil {
		t.Fatal("empty address encoded")
	}
	r, err := ParseReconnect(AppendReconnect(nil, Reconnect{Code: ReconnectDrain, Text: "bye"}))
	if err != nil || r.Code != ReconnectDrain || r.Text != "bye" {
		t.Fatalf("reconnect = %+v %v", r, err)
	}
}

func TestWindow(t *testing.T) {
	var w Window
	steps := []struct {
		seq  uint64
		want bool
	}{
		{0, false}, {1, true}, {1, false}, {3, true}, {2, true}, {2, false},
		{100, true}, {36, false}, {37, true}, {37, false}, {99, true}, {200, true}, {136, false}, {137, true},
	}
	for _, s := range steps {
		if got := w.Accept(s.seq); got != s.want {
			t.Fatalf("Accept(%d) = %v, want %v (window max %d)", s.seq, got, s.want, w.max)
		}
	}
}

func TestPeekType(t *testing.T) {
	if _, err := PeekType([]byte{2}); !errors.Is(err, ErrShort) {
		t.Fatal(err)
	}
	if _, err := PeekType([]byte{VersionV1, 1}); !errors.Is(err, ErrVersion) {
		t.Fatal(err)
	}
	if typ, err := PeekType([]byte{Version, 0x10}); err != nil || typ != TypeData {
		t.Fatal(typ, err)
	}
	if TypeJoin.Authenticated() || TypeCookie.Authenticated() || !TypeMove.Authenticated() || Type(0x15).Authenticated() {
		t.Fatal("Authenticated wrong")
	}
}

func TestInstanceID(t *testing.T) {
	in := newInstance(t)
	pub, err := ParseInstanceID(in.ID())
	if err != nil || [InstanceLen]byte(pub[:InstanceLen]) != in.Tag() {
		t.Fatalf("parse %q: %v", in.ID(), err)
	}
	for _, bad := range []string{"", "not base64!", "AAAA"} {
		if _, err := NewInitiator(bad); err == nil {
			t.Fatalf("instance id %q accepted", bad)
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	k := testKey(1)
	body := make([]byte, 160)
	buf := make([]byte, 0, Overhead+len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var s Scratch
	for b.Loop() {
		buf = k.SealWith(&s, buf[:0], ToClient, Header{Type: TypeData, Member: 1, Seq: 1}, body)
	}
}

func BenchmarkOpen(b *testing.B) {
	k := testKey(1)
	p := k.Seal(nil, ToServer, Header{Type: TypeData, Member: 1, Seq: 1}, make([]byte, 160))
	q := make([]byte, len(p))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	var s Scratch
	for b.Loop() {
		copy(q, p)
		if _, _, err := k.Open(&s, ToServer, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is one join's crypto on both sides (three X25519 per side, HKDF, seals).
func BenchmarkHandshake(b *testing.B) {
	in := newInstance(b)
	tok := bytes.Repeat([]byte("t"), 400)
	b.ReportAllocs()
	for b.Loop() {
		hs, _ := NewInitiator(in.ID())
		p, _ := hs.Join(tok)
		j, _ := ParseJoin(p)
		r, _, err := in.Open(j)
		if err != nil {
			b.Fatal(err)
		}
		acc, _, _ := r.Accept(Accept{MemberID: 1})
		if _, _, err := hs.Accept(acc); err != nil {
			b.Fatal(err)
		}
	}
}
