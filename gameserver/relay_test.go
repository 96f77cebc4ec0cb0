package gameserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/gameserver/client"
	"github.com/kumi-dev/kumi/gameserver/wire"
)

func TestRelayIPv6(t *testing.T) {
	for _, io := range []string{IOBatch, IOSingle} {
		t.Run(io, func(t *testing.T) {
			signer := newSigner(t)
			cfg := testConfig("gs-6")
			cfg.ListenAddr = "[::1]:0"
			cfg.IO = io
			s := startServer(t, cfg, signer)
			a := dial(t, s, mint(t, signer, "gs-6", "s1", "p1", time.Minute))
			b := dial(t, s, mint(t, signer, "gs-6", "s1", "p2", time.Minute))
			if err := a.Send([]byte("over v6")); err != nil {
				t.Fatal(err)
			}
			if e := recvKind(t, b, client.EventData); string(e.Payload) != "over v6" {
				t.Fatalf("got %q", e.Payload)
			}
		})
	}
}

// FuzzRelayHandle feeds arbitrary datagrams straight into the relay's packet handler of a live
// server (one session of two members, one of whose keys the seeds use): nothing may panic, the
// session must survive, and only datagrams sealed with a member's key may be relayed.
func FuzzRelayHandle(f *testing.F) {
	signer := newSigner(f)
	cfg := testConfig("gs-f")
	cfg.IO = IOSingle
	cfg.MaxPayload = 64
	cfg.Keepalive, cfg.MemberTimeout = time.Hour, 2*time.Hour // the fixture's members stay silent
	s := startServer(f, cfg, signer)
	m, _ := rawJoin(f, s, mint(f, signer, "gs-f", "s1", "p1", time.Hour))
	rawJoin(f, s, mint(f, signer, "gs-f", "s1", "p2", time.Hour))

	f.Add(m.join) // a JOIN with a valid cookie for 127.0.0.1 (replayed: refused by the admission)
	f.Add(m.packet(wire.TypeData, []byte("hello")))
	f.Add(m.packet(wire.TypeKeepalive, nil))
	f.Add(m.packet(wire.TypeData, make([]byte, 65)))
	f.Add(m.packet(wire.TypeMove, nil))
	f.Add([]byte{wire.Version})
	f.Add([]byte{wire.VersionV1, byte(wire.TypeJoin), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(wire.AppendCookie(nil, wire.Cookie{}))

	r := newRelayer(s)
	r.obuf = make([]byte, 0, wire.Overhead+cfg.MaxPayload)
	from := netip.MustParseAddrPort("127.0.0.1:9")
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > 0 && wire.Type(p[min(1, len(p)-1)]) == wire.TypeLeave {
			return // a genuine LEAVE would end the fixture's session
		}
		before := s.relayed.Load()
		orig := bytes.Clone(p)
		s.mu.RLock()
		r.handle(p, from, time.Now().UnixNano())
		s.mu.RUnlock()
		r.publish()
		r.afterBatch()
		if st := s.Stats(); st.Sessions != 1 || st.Members != 2 {
			t.Fatalf("state changed: %+v", st)
		}
		if s.relayed.Load() != before {
			if _, _, err := m.key.Open(nil, wire.ToServer, orig); err != nil {
				t.Fatalf("relayed a datagram that does not authenticate: % x", orig)
			}
		}
	})
}

// The relay's DATA path allocates nothing per datagram (open, window, bucket, one seal and send
// per recipient), in both I/O modes: garbage collection must not show up as voice latency.
func TestRelayHotPathAllocs(t *testing.T) {
	for _, io := range []string{IOBatch, IOSingle} {
		t.Run(io, func(t *testing.T) {
			signer := newSigner(t)
			cfg := testConfig("gs-z")
			cfg.IO = io
			cfg.MemberRate = 0 // unlimited: every datagram goes the whole way
			s := startServer(t, cfg, signer)
			m, _ := rawJoin(t, s, mint(t, signer, "gs-z", "s1", "p1", time.Minute))
			rawJoin(t, s, mint(t, signer, "gs-z", "s1", "p2", time.Minute))
			rawJoin(t, s, mint(t, signer, "gs-z", "s1", "p3", time.Minute))
			const runs = 200
			pkts := make([][]byte, runs+1)
			for i := range pkts {
				pkts[i] = m.packet(wire.TypeData, []byte("a voice frame"))
			}
			r := newRelayer(s)
			if err := r.buffers(); err != nil {
				t.Fatal(err)
			}
			from := m.sock.LocalAddr().(*net.UDPAddr).AddrPort()
			before := s.relayed.Load()
			next := 0
			allocs := testing.AllocsPerRun(runs, func() {
				s.mu.RLock()
				r.handle(pkts[next], from, time.Now().UnixNano())
				s.mu.RUnlock()
				r.flush()
				r.afterBatch()
				next++
			})
			if allocs > 0 {
				t.Fatalf("%.1f allocations per relayed DATA, want 0", allocs)
			}
			if got := s.relayed.Load() - before; got != 2*(runs+1) {
				t.Fatalf("relayed %d, want %d", got, 2*(runs+1))
			}
		})
	}
}

// With several relay workers (one SO_REUSEPORT socket each), members of one session on different
// source ports, which the kernel spreads over the workers' sockets, all receive each other: a
// worker forwards to members whose datagrams another worker reads. With 6 members and 4 sockets
// the chance that all land on one socket is 4⁻⁵ ≈ 0.1 %.
func TestRelayWorkers(t *testing.T) {
	for _, io := range []string{IOBatch, IOSingle} {
		t.Run(io, func(t *testing.T) {
			signer := newSigner(t)
			cfg := testConfig("gs-w")
			cfg.IO = io
			cfg.Workers = 4
			s := startServer(t, cfg, signer)
			if len(s.conns) != 4 {
				t.Fatalf("%d sockets, want 4", len(s.conns))
			}
			const n = 6
			conns := make([]*client.Conn, n)
			for i := range conns {
				conns[i] = dial(t, s, mint(t, signer, "gs-w", "s1", fmt.Sprintf("p%d", i), time.Minute))
			}
			for i, c := range conns {
				if err := c.Send(fmt.Appendf(nil, "from %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			for i, c := range conns {
				got := map[string]bool{}
				for range n - 1 {
					got[string(recvKind(t, c, client.EventData).Payload)] = true
				}
				for j := range n {
					if want := fmt.Sprintf("from %d", j); j != i && !got[want] {
						t.Errorf("member %d did not get %q (got %v)", i, want, got)
					}
				}
			}
		})
	}
}

// Several workers bind their port with SO_REUSEPORT, which would let them join the socket group of
// another process on that port; the server refuses a port already in use instead of sharing it.
func TestRelayWorkersRefuseTakenPort(t *testing.T) {
	for _, holder := range []struct {
		name  string
		reuse bool
	}{{"plain socket", false}, {"SO_REUSEPORT socket", true}} {
		t.Run(holder.name, func(t *testing.T) {
			var lc net.ListenConfig
			if holder.reuse {
				lc.Control = reusePort
			}
			pc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			cfg := testConfig("gs-taken")
			cfg.Workers = 2
			cfg.ListenAddr = pc.LocalAddr().String()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := Start(ctx, testLog(t), cfg, prometheus.NewRegistry(), WithVerifier(newSigner(t).Verifier("", time.Second)))
			if err == nil {
				cancel()
				_ = s.Wait()
				t.Fatalf("server started on %s, which another socket holds", cfg.ListenAddr)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("error %v, want address already in use", err)
			}
		})
	}
}
