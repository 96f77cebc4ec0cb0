package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func testKey(b byte) *Key {
	var raw [KeyLen]byte
	for i := range raw {
		raw[i] = b + byte(i)
	}
	return NewKey(raw)
}

func TestJoinRoundTrip(t *testing.T) {
	j := Join{Nonce: [NonceLen]byte{1, 2, 3, 4, 5, 6, 7, 8}, Token: []byte("header.claims.sig")}
	p, err := AppendJoin(nil, j)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseJoin(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Nonce != j.Nonce || !bytes.Equal(got.Token, j.Token) {
		t.Fatalf("got %+v, want %+v", got, j)
	}
	if _, err := AppendJoin(nil, Join{Token: make([]byte, MaxToken+1)}); err == nil {
		t.Fatal("oversized token encoded")
	}
}

func TestParseErrors(t *testing.T) {
	join, _ := AppendJoin(nil, Join{Token: []byte("tok")})
	acc := AppendAccept(nil, Accept{MemberID: 7})
	ref := AppendRefuse(nil, Refuse{Code: RefuseFull, Text: "full"})
	for _, tc := range []struct {
		name  string
		parse func([]byte) error
		in    []byte
		want  error
	}{
		{"join empty", pj, nil, ErrShort},
		{"join version", pj, append([]byte{2}, join[1:]...), ErrVersion},
		{"join type", pj, acc, ErrType},
		{"join truncated", pj, join[:len(join)-1], ErrShort},
		{"join trailing", pj, append(bytes.Clone(join), 0), ErrTrailing},
		{"join zero token", pj, append(bytes.Clone(join[:10]), 0, 0), ErrTooLarge},
		{"join huge token", pj, append(bytes.Clone(join[:10]), 0xff, 0xff), ErrTooLarge},
		{"accept truncated", pa, acc[:len(acc)-1], ErrShort},
		{"accept trailing", pa, append(bytes.Clone(acc), 1), ErrTrailing},
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
func pa(p []byte) error { _, err := ParseAccept(p); return err }
func pr(p []byte) error { _, err := ParseRefuse(p); return err }

func TestAcceptRefuseRoundTrip(t *testing.T) {
	a := Accept{Nonce: [NonceLen]byte{9}, MemberID: 0xdeadbeef, Keepalive: 2 * time.Second, Timeout: 10 * time.Second, MaxPayload: 1200}
	a.Key[0], a.Key[31] = 1, 2
	got, err := ParseAccept(AppendAccept(nil, a))
	if err != nil || got != a {
		t.Fatalf("accept = %+v, %v; want %+v", got, err, a)
	}
	r := Refuse{Nonce: [NonceLen]byte{3}, Code: RefuseDraining, Text: strings.Repeat("x", 300)}
	gr, err := ParseRefuse(AppendRefuse(nil, r))
	if err != nil || gr.Code != RefuseDraining || len(gr.Text) != MaxText || gr.Nonce != r.Nonce {
		t.Fatalf("refuse = %+v, %v", gr, err)
	}
}

func TestSealOpen(t *testing.T) {
	k := testKey(1)
	h := Header{Type: TypeData, Member: 42, Seq: 7}
	p := k.Seal(nil, ToServer, h, []byte("voice"))
	if len(p) != Overhead+5 {
		t.Fatalf("len = %d", len(p))
	}
	gh, body, err := k.Open(nil, ToServer, p)
	if err != nil || gh != h || string(body) != "voice" {
		t.Fatalf("open = %+v %q %v", gh, body, err)
	}
	// Wrong direction, wrong key, any flipped bit: all refused.
	if _, _, err := k.Open(nil, ToClient, p); !errors.Is(err, ErrAuth) {
		t.Fatalf("other direction: %v", err)
	}
	if _, _, err := testKey(2).Open(nil, ToServer, p); !errors.Is(err, ErrAuth) {
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

func TestSealInPlace(t *testing.T) {
	k := testKey(5)
	want := k.Seal(nil, ToClient, Header{Type: TypeData, Member: 3, Seq: 99}, []byte("payload"))
	buf := bytes.Clone(want)
	clear(buf[len(buf)-TagLen:])
	k.SealInPlace(nil, ToClient, buf)
	if !bytes.Equal(buf, want) {
		t.Fatal("SealInPlace differs from Seal")
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
	if _, err := PeekType([]byte{1}); !errors.Is(err, ErrShort) {
		t.Fatal(err)
	}
	if _, err := PeekType([]byte{9, 1}); !errors.Is(err, ErrVersion) {
		t.Fatal(err)
	}
	if typ, err := PeekType([]byte{1, 0x10}); err != nil || typ != TypeData {
		t.Fatal(typ, err)
	}
	if TypeJoin.Authenticated() || !TypeMove.Authenticated() || Type(0x15).Authenticated() {
		t.Fatal("Authenticated wrong")
	}
}

func BenchmarkSealInPlace(b *testing.B) {
	k := testKey(1)
	p := k.Seal(nil, ToClient, Header{Type: TypeData, Member: 1, Seq: 1}, make([]byte, 160))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	var s Scratch
	for b.Loop() {
		k.SealInPlace(&s, ToClient, p)
	}
}

func BenchmarkOpen(b *testing.B) {
	k := testKey(1)
	p := k.Seal(nil, ToServer, Header{Type: TypeData, Member: 1, Seq: 1}, make([]byte, 160))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	var s Scratch
	for b.Loop() {
		if _, _, err := k.Open(&s, ToServer, p); err != nil {
			b.Fatal(err)
		}
	}
}
