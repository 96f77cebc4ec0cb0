package wire

import (
	"bytes"
	"testing"
)

// The fuzz targets check that no input panics a parser, that whatever parses re-encodes to the
// same bytes (so a parser cannot accept something the encoder would never write), and that only
// what the right key sealed opens. Seeds live in testdata/fuzz and run in every normal `go test`.

func FuzzParseJoin(f *testing.F) {
	in := newInstance(f)
	_, p := testJoin(f, in, "a.b.c")
	f.Add(p)
	f.Fuzz(func(t *testing.T, p []byte) {
		j, err := ParseJoin(p)
		if err != nil {
			return
		}
		q, err := AppendJoin(nil, j)
		if err != nil || !bytes.Equal(p, q) {
			t.Fatalf("re-encode: %v\n in % x\nout % x", err, p, q)
		}
		// Opening must not panic; it succeeds only for what was sealed to in.
		if _, tok, err := in.Open(j); err == nil && len(tok) == 0 {
			t.Fatal("opened an empty token")
		}
	})
}

func FuzzParseCookie(f *testing.F) {
	f.Add(AppendCookie(nil, Cookie{Nonce: [NonceLen]byte{1}, Cookie: [CookieLen]byte{2}}))
	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := ParseCookie(p)
		if err != nil {
			return
		}
		if q := AppendCookie(nil, c); !bytes.Equal(p, q) {
			t.Fatalf("re-encode:\n in % x\nout % x", p, q)
		}
	})
}

// FuzzAccept feeds arbitrary ACCEPTs to a client's initiator: nothing panics and only the
// server's real answer opens.
func FuzzAccept(f *testing.F) {
	in := newInstance(f)
	hs, p := testJoin(f, in, "a.b.c")
	j, _ := ParseJoin(p)
	r, _, err := in.Open(j)
	if err != nil {
		f.Fatal(err)
	}
	real, _, err := r.Accept(Accept{MemberID: 1, MaxPayload: 1200})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Fuzz(func(t *testing.T, p []byte) {
		if _, err := ParseAcceptHeader(p); err != nil {
			return
		}
		if _, _, err := hs.Accept(p); err == nil && !bytes.Equal(p, real) {
			t.Fatalf("opened a forged ACCEPT % x", p)
		}
	})
}

func FuzzParseRefuse(f *testing.F) {
	f.Add(AppendRefuse(nil, Refuse{Code: RefuseFull, Text: "server full"}))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseRefuse(p)
		if err != nil {
			return
		}
		if q := AppendRefuse(nil, r); !bytes.Equal(p, q) {
			t.Fatalf("re-encode:\n in % x\nout % x", p, q)
		}
	})
}

// FuzzOpen feeds arbitrary datagrams to the sealed path with a fixed key: only packets this key
// sealed may pass, and their bodies must parse without panics.
func FuzzOpen(f *testing.F) {
	k := testKey(7)
	f.Add(k.Seal(nil, ToServer, Header{Type: TypeData, Member: 1, Seq: 1}, []byte("hi")))
	f.Add(k.Seal(nil, ToServer, Header{Type: TypeKeepalive, Member: 1, Seq: 2}, nil))
	mv, _ := AppendMove(nil, Move{Addr: "127.0.0.1:1", Token: "t"})
	f.Add(k.Seal(nil, ToServer, Header{Type: TypeMove, Member: 0, Seq: 3}, mv))
	f.Fuzz(func(t *testing.T, p []byte) {
		var s Scratch
		orig := bytes.Clone(p)
		h, body, err := k.Open(&s, ToServer, p)
		if err != nil {
			return
		}
		if q := k.Seal(nil, ToServer, h, body); !bytes.Equal(orig, q) {
			t.Fatalf("opened packet does not re-seal identically")
		}
		switch h.Type {
		case TypeMove:
			_, _ = ParseMove(body)
		case TypeReconnect:
			_, _ = ParseReconnect(body)
		}
	})
}

func FuzzParseMove(f *testing.F) {
	b, _ := AppendMove(nil, Move{Addr: "10.0.0.1:7000", Token: "x.y.z"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMove(b)
		if err != nil {
			return
		}
		q, err := AppendMove(nil, m)
		if err != nil || !bytes.Equal(b, q) {
			t.Fatalf("re-encode: %v\n in % x\nout % x", err, b, q)
		}
	})
}

func FuzzParseReconnect(f *testing.F) {
	f.Add(AppendReconnect(nil, Reconnect{Code: ReconnectDrain, Text: "draining"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReconnect(b)
		if err != nil {
			return
		}
		if q := AppendReconnect(nil, r); !bytes.Equal(b, q) {
			t.Fatalf("re-encode:\n in % x\nout % x", b, q)
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{Version, 0x10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := ParseHeader(p)
		if err == nil && (!h.Type.Authenticated() || len(p) < Overhead) {
			t.Fatalf("accepted %+v from %d bytes", h, len(p))
		}
	})
}
