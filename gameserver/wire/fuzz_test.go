package wire

import (
	"bytes"
	"testing"
)

// The fuzz targets check that no input panics a parser and that whatever parses re-encodes to the
// same bytes (so a parser cannot accept something the encoder would never write). Seeds live in
// testdata/fuzz and run in every normal `go test`.

func FuzzParseJoin(f *testing.F) {
	p, _ := AppendJoin(nil, Join{Nonce: [NonceLen]byte{1}, Token: []byte("a.b.c")})
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
	})
}

func FuzzParseAccept(f *testing.F) {
	f.Add(AppendAccept(nil, Accept{MemberID: 1, MaxPayload: 1200}))
	f.Fuzz(func(t *testing.T, p []byte) {
		a, err := ParseAccept(p)
		if err != nil {
			return
		}
		if q := AppendAccept(nil, a); !bytes.Equal(p, q) {
			t.Fatalf("re-encode:\n in % x\nout % x", p, q)
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

// FuzzOpen feeds arbitrary datagrams to the authenticated path with a fixed key: only packets
// this key sealed may pass, and their bodies must parse without panics.
func FuzzOpen(f *testing.F) {
	k := testKey(7)
	f.Add(k.Seal(nil, ToServer, Header{Type: TypeData, Member: 1, Seq: 1}, []byte("hi")))
	f.Add(k.Seal(nil, ToServer, Header{Type: TypeKeepalive, Member: 1, Seq: 2}, nil))
	mv, _ := AppendMove(nil, Move{Addr: "127.0.0.1:1", Token: "t"})
	f.Add(k.Seal(nil, ToServer, Header{Type: TypeMove, Member: 0, Seq: 3}, mv))
	f.Fuzz(func(t *testing.T, p []byte) {
		var s Scratch
		h, body, err := k.Open(&s, ToServer, p)
		if err != nil {
			return
		}
		if q := k.Seal(nil, ToServer, h, body); !bytes.Equal(p, q) {
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
	f.Add([]byte{1, 0x10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := ParseHeader(p)
		if err == nil && (!h.Type.Authenticated() || len(p) < Overhead) {
			t.Fatalf("accepted %+v from %d bytes", h, len(p))
		}
	})
}
