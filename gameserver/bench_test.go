package gameserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"

	"github.com/kumi-dev/kumi/gameserver/client"
	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/internal/tracing"
)

// The relay benchmarks run the server in a child process (this test binary re-executed with
// KUMI_RELAY_CHILD set) so its CPU time can be read with getrusage apart from the load generator's,
// which shares this machine's cores. The generator ("crowd") multiplexes many members on one UDP
// socket per member slot and uses sendmmsg/recvmmsg itself, so it is cheap enough to drive the relay.

var (
	benchSessions = flag.Int("relay.sessions", 250, "sessions in BenchmarkRelay")
	benchMembers  = flag.Int("relay.members", 4, "members per session in BenchmarkRelay")
	benchRate     = flag.Float64("relay.rate", 40000, "offered DATA packets per second (all members together) in BenchmarkRelay")
	benchDur      = flag.Duration("relay.dur", 3*time.Second, "measurement window of each BenchmarkRelay run")
	benchPayload  = flag.Int("relay.payload", 100, "DATA payload bytes (voice-like)")
	benchBatch    = flag.Int("relay.batch", Default().BatchSize, "relay batch-size in BenchmarkRelay")
	benchRounds   = flag.Int("relay.rounds", 3, "rounds of BenchmarkRelay: each runs every contender once, interleaved, so machine noise hits them alike")
)

const childEnv = "KUMI_RELAY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(relayChild())
	}
	os.Exit(m.Run())
}

// withV1Keys gives members v1's authenticate-only keys: the relay benchmark's v1 baseline.
func withV1Keys() Option { return func(d *deps) { d.v1Keys = true } }

// relayChild is the relay process: a game server with the requested I/O mode and protocol (v2, or
// v1's DATA sealing), or the bare forwarder, answering "stats" on stdin with its CPU time and
// counters, exiting at EOF.
func relayChild() int {
	if os.Getenv("KUMI_RELAY_PROTO") == "bare" {
		return bareChild()
	}
	cfg := Default()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Name = "bench"
	cfg.IO = os.Getenv("KUMI_RELAY_IO")
	// One relay worker unless BenchmarkRelayWorkers asks for more: the other relay benchmarks
	// compare work per datagram, on one socket as the bare forwarder has.
	cfg.Workers = 1
	if n, err := strconv.Atoi(os.Getenv("KUMI_RELAY_WORKERS")); err == nil {
		cfg.Workers = n
	}
	cfg.Capacity, _ = strconv.Atoi(os.Getenv("KUMI_RELAY_CAPACITY"))
	cfg.MaxMembers = 8
	if n, err := strconv.Atoi(os.Getenv("KUMI_RELAY_BATCH")); err == nil {
		cfg.BatchSize = n
	}
	// The crowd joins every member from 127.0.0.1 at once.
	cfg.JoinRate, cfg.JoinBurst, cfg.JoinBacklog = 1e6, 1e6, 1<<16
	cfg.JoinSourceRate, cfg.JoinSourceBurst = 1e6, 1e6
	cfg.Keepalive, cfg.MemberTimeout = 30*time.Second, 5*time.Minute
	cfg.Token.JWKSFile = os.Getenv("KUMI_RELAY_JWKS")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// As `kumi gameserver` does: tracing from the OTEL_* environment (BenchmarkRelayTracing's on
	// variant), off (nothing installed) without it.
	shutdown, err := tracing.Setup(ctx, log, "kumi-gameserver")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = shutdown(context.Background()) }()
	reg := prometheus.NewRegistry()
	var opts []Option
	if os.Getenv("KUMI_RELAY_PROTO") == "v1" {
		opts = append(opts, withV1Keys())
	}
	s, err := Start(ctx, log, cfg, reg, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if path := os.Getenv("KUMI_RELAY_CPUPROFILE"); path != "" {
		// Profile the relay process for the whole run (go tool pprof <test binary> <path>).
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	fmt.Printf("ADDR %s %s\n", s.Addr(), s.Instance())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stats":
			st := s.Stats()
			var dropped uint64
			for _, n := range st.Dropped {
				dropped += n
			}
			bounds, counts := batchHist(reg)
			printStats(st.Relayed, st.Received, dropped, st.Sessions, st.Members, joinInts(bounds), joinInts(counts))
		}
	}
	cancel()
	if err := s.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// printStats prints the STATS line relayProc.stats reads: CPU time and heap of this process,
// then the given counters.
func printStats(relayed, received, dropped uint64, sessions, members int, bounds, counts string) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("STATS %d %d %d %d %d %d %d %s %s %d\n", cpu, relayed, received, dropped, ms.HeapAlloc, sessions, members, bounds+"-", counts+"-", ms.Mallocs)
}

// bareChild is the machine's own limit for the relay's job: a batched UDP forwarder with the
// relay's batch sizes (recvmmsg, then sendmmsg of each datagram to every other crowd socket: the
// same fan-out) and nothing else — no sessions, no crypto, no checks. Its peers come on stdin
// ("peers addr,addr,…").
func bareChild() int {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	batch := Default().BatchSize
	if n, err := strconv.Atoi(os.Getenv("KUMI_RELAY_BATCH")); err == nil {
		batch = n
	}
	var peers atomic.Pointer[[]netip.AddrPort]
	peers.Store(&[]netip.AddrPort{})
	var fwd, recv atomic.Uint64
	go func() {
		bufs := make([][]byte, batch)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		br, err := newBatchReader(conn, bufs)
		if err != nil {
			panic(err)
		}
		// The relay's own writer (sendmmsg, MSG_DONTWAIT), so the two differ only in their work.
		out, err := newBatchWriter(conn, batch)
		if err != nil {
			panic(err)
		}
		k := 0
		flush := func() {
			for sent := 0; sent < k; {
				n, err := out.write(sent, k)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					n = max(n, 0) + 1 // skip the refused datagram
				}
				sent += n
				fwd.Add(uint64(n))
			}
			k = 0
		}
		for {
			n, err := br.read()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			recv.Add(uint64(n))
			ps := *peers.Load()
			for i := range n {
				p, from := br.packet(i)
				for _, to := range ps {
					if to.Port() == from.Port() {
						continue
					}
					out.set(k, p, to)
					k++
					if k == batch {
						flush()
					}
				}
			}
			flush()
		}
	}()
	if path := os.Getenv("KUMI_RELAY_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	fmt.Printf("ADDR %s -\n", conn.LocalAddr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "peers":
			var ps []netip.AddrPort
			for _, a := range strings.Split(arg, ",") {
				ap, err := netip.ParseAddrPort(a)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
				ps = append(ps, ap)
			}
			peers.Store(&ps)
		case "stats":
			printStats(fwd.Load(), recv.Load(), 0, 0, 0, "", "")
		}
	}
	conn.Close()
	return 0
}

func joinInts[T int64 | uint64](v []T) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatUint(uint64(x), 10)
	}
	return strings.Join(append(s, ""), ",")
}

func splitInts(s string) []uint64 {
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		if f != "" {
			n, _ := strconv.ParseUint(f, 10, 64)
			out = append(out, n)
		}
	}
	return out
}

// batchHist returns relay_batch_seconds' bucket bounds (ns) and cumulative counts.
func batchHist(reg *prometheus.Registry) (bounds []int64, counts []uint64) {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if strings.HasSuffix(mf.GetName(), "relay_batch_seconds") {
			for _, bk := range mf.GetMetric()[0].GetHistogram().GetBucket() {
				bounds = append(bounds, int64(bk.GetUpperBound()*1e9))
				counts = append(counts, bk.GetCumulativeCount())
			}
		}
	}
	return bounds, counts
}

// histP99 is the 99th percentile (bucket upper bound) of the batches between two snapshots.
func histP99(bounds []int64, before, after []uint64) time.Duration {
	if len(after) == 0 || len(before) != len(after) {
		return -1
	}
	total := after[len(after)-1] - before[len(before)-1]
	for i := range after {
		if float64(after[i]-before[i]) >= 0.99*float64(total) {
			return time.Duration(bounds[i])
		}
	}
	return -1
}

type relayProc struct {
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Scanner
	addr     netip.AddrPort
	instance string // "-" for the bare forwarder
}

type relayStats struct {
	cpu                        time.Duration
	relayed, received, dropped uint64
	heap                       uint64
	sessions, members          int
	bounds, counts             []uint64 // relay_batch_seconds buckets (ns) and cumulative counts
	mallocs                    uint64
}

// startRelay starts the relay child: proto v2, v1 (v1's DATA sealing) or bare (the forwarder).
func startRelay(b *testing.B, proto, ioMode string, capacity int, jwks string, env ...string) *relayProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), childEnv+"=1", "KUMI_RELAY_PROTO="+proto, "KUMI_RELAY_IO="+ioMode, "KUMI_RELAY_CAPACITY="+strconv.Itoa(capacity), "KUMI_RELAY_JWKS="+jwks, "KUMI_RELAY_BATCH="+strconv.Itoa(*benchBatch))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &relayProc{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	b.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	addr, ins, _ := strings.Cut(p.line(b, "ADDR"), " ")
	if p.addr, err = netip.ParseAddrPort(addr); err != nil {
		b.Fatal(err)
	}
	p.instance = ins
	return p
}

func (p *relayProc) line(b *testing.B, prefix string) string {
	b.Helper()
	for p.out.Scan() {
		if rest, ok := strings.CutPrefix(p.out.Text(), prefix+" "); ok {
			return rest
		}
	}
	b.Fatalf("relay process ended before %s", prefix)
	return ""
}

// settled waits until the relay has worked off the joins (the crowd's JOIN resends still queued
// in its socket and admission backlog: X25519 and token checks) and returns its stats then, so
// that work is not counted in the measurement window. On a loaded machine it could be a good part
// of a relay's CPU time in the window (and showed as allocations per received datagram).
func (p *relayProc) settled(b *testing.B) relayStats {
	b.Helper()
	st := p.stats(b)
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		next := p.stats(b)
		quiet := next.received == st.received && next.cpu-st.cpu < 20*time.Millisecond
		st = next
		if quiet {
			break
		}
	}
	return st
}

func (p *relayProc) stats(b *testing.B) relayStats {
	b.Helper()
	fmt.Fprintln(p.in, "stats")
	f := strings.Fields(p.line(b, "STATS"))
	n := make([]uint64, 7)
	for i := range n {
		n[i], _ = strconv.ParseUint(f[i], 10, 64)
	}
	st := relayStats{cpu: time.Duration(n[0]), relayed: n[1], received: n[2], dropped: n[3], heap: n[4], sessions: int(n[5]), members: int(n[6]),
		bounds: splitInts(strings.TrimSuffix(f[7], "-")), counts: splitInts(strings.TrimSuffix(f[8], "-"))}
	st.mallocs, _ = strconv.ParseUint(f[9], 10, 64)
	return st
}

// crowd is the load generator: member slot j of every session sends and receives on socket j.
type crowd struct {
	socks   []*net.UDPConn
	pcs     []*ipv4.PacketConn
	members [][]*crowdMember // [slot][session]
	// session maps a member id to its session index, so a receiver finds the recipient's key
	// (DATA names its sender); nil when payloads travel in clear (v1 sealing, bare forwarder).
	session map[uint32]int
	hist    latencyHist
	got     atomic.Uint64
	// sampledEvery > 0 mints tokens carrying a traceparent, as a director with tracing on does:
	// one in sampledEvery sampled, the rest not (relayTracing).
	sampledEvery int
}

type crowdMember struct {
	id  uint32
	key *wire.Key
	seq uint64
}

// index fills c.session (after join) so receivers can decrypt.
func (c *crowd) index() {
	c.session = make(map[uint32]int)
	for _, ms := range c.members {
		for i, m := range ms {
			c.session[m.id] = i
		}
	}
}

// latencyHist counts latencies in 10 µs buckets up to 100 ms.
type latencyHist struct {
	mu      sync.Mutex
	buckets [10000]uint64
	n       uint64
}

func (h *latencyHist) add(local *[10000]uint64, d time.Duration) {
	i := int(d / (10 * time.Microsecond))
	if i < 0 {
		i = 0
	}
	if i >= len(local) {
		i = len(local) - 1
	}
	local[i]++
}

func (h *latencyHist) merge(local *[10000]uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, n := range local {
		h.buckets[i] += n
		h.n += n
	}
}

func (h *latencyHist) quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := uint64(q * float64(h.n))
	var acc uint64
	for i, n := range h.buckets {
		acc += n
		if acc > want {
			return time.Duration(i+1) * 10 * time.Microsecond
		}
	}
	return 100 * time.Millisecond
}

func (h *latencyHist) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.buckets[:])
	h.n = 0
}

func newCrowd(b *testing.B, slots int) *crowd {
	b.Helper()
	c := &crowd{}
	for range slots {
		s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		_ = s.SetReadBuffer(8 << 20)
		_ = s.SetWriteBuffer(8 << 20)
		b.Cleanup(func() { s.Close() })
		c.socks = append(c.socks, s)
		c.pcs = append(c.pcs, ipv4.NewPacketConn(s))
		c.members = append(c.members, nil)
	}
	return c
}

// join admits every member (slot j of session i), resending JOINs until all are ACCEPTed.
func (c *crowd) join(b *testing.B, server netip.AddrPort, signer *token.Signer, name, instance string, sessions int, v1 bool) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(c.socks))
	for j, sock := range c.socks {
		toks := make([][]byte, sessions)
		for i := range sessions {
			cl := token.ServerClaims{PlayerID: fmt.Sprintf("p%d-%d", i, j), SessionID: fmt.Sprintf("sess-%d", i), Server: name, Instance: instance, ExpiresAt: time.Now().Add(5 * time.Minute)}
			if c.sampledEvery > 0 {
				flags := "00"
				if (j*sessions+i)%c.sampledEvery == 0 {
					flags = "01"
				}
				cl.TraceParent = fmt.Sprintf("00-%016x%016x-%016x-%s", rand.Uint64()|1, rand.Uint64(), rand.Uint64()|1, flags)
			}
			raw, err := signer.ServerToken(cl)
			if err != nil {
				b.Fatal(err)
			}
			toks[i] = []byte(raw)
		}
		c.members[j] = make([]*crowdMember, sessions)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.joinSlot(sock, server, c.members[j], toks, v1)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// joinSlot joins one member per token from sock: one cookie round trip for the socket, then
// every JOIN with that cookie, resent until ACCEPTed.
func (c *crowd) joinSlot(sock *net.UDPConn, server netip.AddrPort, ms []*crowdMember, toks [][]byte, v1 bool) error {
	deadline := time.Now().Add(30 * time.Second)
	buf := make([]byte, 2048)
	hs := make([]*wire.Initiator, len(ms))
	joins := make([][]byte, len(ms))
	byNonce := make(map[[wire.NonceLen]byte]int, len(ms))
	for i, tok := range toks {
		ins, err := token.UnverifiedServerInstance(string(tok))
		if err != nil {
			return err
		}
		if hs[i], err = wire.NewInitiator(ins); err != nil {
			return err
		}
		if joins[i], err = hs[i].Join(tok); err != nil {
			return err
		}
		byNonce[hs[i].Nonce()] = i
	}
	var cookie *[wire.CookieLen]byte
	left := len(ms)
	for left > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("crowd: %d members not admitted", left)
		}
		for i, m := range ms {
			if m != nil {
				continue
			}
			if cookie != nil {
				wire.SetJoinCookie(joins[i], *cookie)
			}
			if _, err := sock.WriteToUDPAddrPort(joins[i], server); err != nil {
				return err
			}
			if cookie == nil {
				break // one JOIN fetches the socket's cookie
			}
			if i%256 == 255 {
				time.Sleep(time.Millisecond) // pace: let the server's socket buffer drain
			}
		}
		_ = sock.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for left > 0 {
			n, _, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // resend the missing ones
			}
			p := buf[:n]
			switch typ, _ := wire.PeekType(p); typ {
			case wire.TypeRefuse:
				r, _ := wire.ParseRefuse(p)
				return fmt.Errorf("crowd: join refused: %s %s", r.Code, r.Text)
			case wire.TypeCookie:
				if ck, err := wire.ParseCookie(p); err == nil && cookie == nil {
					cookie = &ck.Cookie
				}
			case wire.TypeAccept:
				h, err := wire.ParseAcceptHeader(p)
				if err != nil {
					continue
				}
				i, ok := byNonce[h.Nonce]
				if !ok || ms[i] != nil {
					continue
				}
				a, keys, err := hs[i].Accept(p)
				if err != nil {
					return err
				}
				key := wire.NewKey(keys)
				if v1 {
					key = wire.NewV1Key(keys)
				}
				ms[i] = &crowdMember{id: a.MemberID, key: key}
				left--
			}
			if cookie != nil && left == len(ms) {
				break // got the cookie: send every JOIN now
			}
		}
	}
	_ = sock.SetReadDeadline(time.Time{})
	return nil
}

// run offers rate DATA packets/s in total for dur (members take turns), to server or, when
// direct, straight to the next slot's socket (the no-relay baseline), and counts what arrives.
func (c *crowd) run(server netip.AddrPort, rate float64, dur time.Duration, payload int, direct bool) (sent uint64) {
	c.hist.reset()
	c.got.Store(0)
	stop := make(chan struct{})
	var rwg, swg sync.WaitGroup
	for j := range c.socks {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			c.receive(j, stop)
		}()
	}
	var total atomic.Uint64
	perSlot := rate / float64(len(c.socks))
	for j := range c.socks {
		swg.Add(1)
		go func() {
			defer swg.Done()
			to := server
			if direct {
				to = c.socks[(j+1)%len(c.socks)].LocalAddr().(*net.UDPAddr).AddrPort()
			}
			total.Add(c.send(j, to, perSlot, dur, payload))
		}()
	}
	swg.Wait()
	// Let in-flight packets land, then stop the receivers.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	for _, s := range c.socks {
		_ = s.SetReadDeadline(time.Now())
	}
	rwg.Wait()
	for _, s := range c.socks {
		_ = s.SetReadDeadline(time.Time{})
	}
	return total.Load()
}

func (c *crowd) send(slot int, to netip.AddrPort, rate float64, dur time.Duration, payload int) uint64 {
	const batch = 64
	ms := make([]ipv4.Message, batch)
	bufs := make([][]byte, batch)
	ua := net.UDPAddrFromAddrPort(to)
	for i := range ms {
		bufs[i] = make([]byte, 0, wire.Overhead+payload)
		ms[i].Buffers = [][]byte{nil}
		ms[i].Addr = ua
	}
	body := make([]byte, payload)
	members := c.members[slot]
	var scratch wire.Scratch
	start := time.Now()
	var sent uint64
	next := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		el := time.Since(start)
		if el >= dur {
			break
		}
		target := uint64(rate * el.Seconds())
		if target <= sent {
			continue
		}
		due := target - sent
		for due > 0 {
			n := int(min(due, batch))
			ts := uint64(time.Now().UnixNano())
			for k := range n {
				m := members[next]
				next = (next + 1) % len(members)
				m.seq++
				binary.BigEndian.PutUint64(body, ts)
				bufs[k] = m.key.SealWith(&scratch, bufs[k][:0], wire.ToServer, wire.Header{Type: wire.TypeData, Member: m.id, Seq: m.seq}, body)
				ms[k].Buffers[0] = bufs[k]
			}
			for off := 0; off < n; {
				w, err := c.pcs[slot].WriteBatch(ms[off:n], 0)
				if err != nil {
					w = max(w, 0) + 1
				}
				off += w
			}
			sent += uint64(n)
			due -= uint64(n)
		}
	}
	return sent
}

func (c *crowd) receive(slot int, stop chan struct{}) {
	// The relay's allocation-free reader: the generator's own garbage collection must not show
	// up as relay latency.
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	br, err := newBatchReader(c.socks[slot], bufs)
	if err != nil {
		panic(err)
	}
	var local [10000]uint64
	var scratch wire.Scratch
	defer c.hist.merge(&local)
	for {
		n, err := br.read()
		if err != nil {
			select {
			case <-stop:
				return
			default:
				continue
			}
		}
		now := time.Now().UnixNano()
		for i := range n {
			p, _ := br.packet(i)
			if len(p) < wire.Overhead+8 {
				continue
			}
			body := p[wire.HeaderLen:]
			if c.session != nil {
				// Encrypted: open it with the recipient's key, as a real client does.
				h, err := wire.ParseHeader(p)
				if err != nil {
					continue
				}
				sess, ok := c.session[h.Member]
				if !ok {
					continue
				}
				if _, body, err = c.members[slot][sess].key.Open(&scratch, wire.ToClient, p); err != nil {
					continue
				}
			}
			ts := int64(binary.BigEndian.Uint64(body))
			c.hist.add(&local, time.Duration(now-ts))
		}
		c.got.Add(uint64(n))
	}
}

func benchSigner(b *testing.B) (*token.Signer, string) {
	b.Helper()
	signer := newSigner(b)
	jwks, err := signer.JWKS()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		b.Fatal(err)
	}
	return signer, path
}

// BenchmarkRelay measures forwarded datagrams per CPU-second of the relay process for, in one run:
// the bare batched forwarder (the machine's limit for this job: recvmmsg→sendmmsg to the same
// fan-out, no sessions, no crypto), the relay with v1's DATA sealing (authenticated, clear), the
// v2 relay (encrypted), batched and one syscall per datagram; plus delivery, end-to-end latency,
// and a direct socket-to-socket baseline for the latency the relay adds. The last sub-benchmark
// reports the ratios to the bare forwarder and v2/v1.
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 1x ./gameserver
func BenchmarkRelay(b *testing.B) {
	signer, jwks := benchSigner(b)
	sessions, members := *benchSessions, *benchMembers
	// perCPU[mode][round]: forwarded datagrams per relay CPU-second.
	perCPU := map[string][]float64{}
	for round := range *benchRounds {
		for _, mode := range []struct{ name, proto, io string }{
			{"direct", "", ""},
			{"bare", "bare", IOBatch},
			{"v1", "v1", IOBatch},
			{"v2", "v2", IOBatch},
			{"v2-single", "v2", IOSingle},
		} {
			if mode.proto == "" && round > 0 {
				continue // the latency baseline once is enough
			}
			runRelayContender(b, fmt.Sprintf("%s/r%d/%dx%d/%.0fpps", mode.name, round, sessions, members, *benchRate), mode.proto, mode.io, signer, jwks, nil,
				func(v float64) { perCPU[mode.name] = append(perCPU[mode.name], v) })
		}
	}
	b.Run("ratios", func(b *testing.B) {
		n := len(perCPU["bare"])
		if n == 0 || len(perCPU["v1"]) != n || len(perCPU["v2"]) != n || len(perCPU["v2-single"]) != n {
			b.Fatalf("missing a contender: %v (run the whole benchmark, not a sub-benchmark)", perCPU)
		}
		// Each round's ratio is of runs next to each other; the median over rounds is reported.
		ratio := func(a, c string) float64 {
			r := make([]float64, n)
			for i := range n {
				r[i] = perCPU[a][i] / perCPU[c][i]
			}
			slices.Sort(r)
			b.Logf("%s/%s by round (sorted): %.3f", a, c, r)
			return r[n/2]
		}
		b.ReportMetric(ratio("v2", "bare"), "v2/bare")
		b.ReportMetric(ratio("v1", "bare"), "v1/bare")
		b.ReportMetric(ratio("v2", "v1"), "v2/v1")
		b.ReportMetric(ratio("v2-single", "bare"), "v2-single/bare")
	})
}

// runRelayContender runs one BenchmarkRelay contender: proto "" (direct socket to socket), bare,
// v1 or v2; record gets its forwarded datagrams per relay CPU-second.
// tr, when not nil, turns tracing on in the relay process (BenchmarkRelayTracing).
func runRelayContender(b *testing.B, name, proto, ioMode string, signer *token.Signer, jwks string, tr *relayTracing, record func(float64)) {
	sessions, members := *benchSessions, *benchMembers
	mode := struct{ proto, io string }{proto, ioMode}
	b.Run(name, func(b *testing.B) {
		c := newCrowd(b, members)
		if mode.proto == "" || mode.proto == "bare" {
			for j := range c.members {
				c.members[j] = make([]*crowdMember, sessions)
				for i := range c.members[j] {
					c.members[j][i] = &crowdMember{id: uint32(i), key: wire.NewV1Key(wire.SessionKeys{})}
				}
			}
		}
		if mode.proto == "" {
			sent := c.run(netip.AddrPort{}, *benchRate, *benchDur, *benchPayload, true)
			b.ReportMetric(float64(c.got.Load())/float64(sent), "delivered/sent")
			b.ReportMetric(float64(c.hist.quantile(0.5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(c.hist.quantile(0.99).Microseconds()), "p99-µs")
			return
		}
		var env []string
		if tr != nil {
			env, c.sampledEvery = tr.env, tr.sampledEvery
		}
		p := startRelay(b, mode.proto, mode.io, sessions, jwks, env...)
		if mode.proto == "bare" {
			addrs := make([]string, len(c.socks))
			for j, s := range c.socks {
				addrs[j] = s.LocalAddr().String()
			}
			fmt.Fprintf(p.in, "peers %s\n", strings.Join(addrs, ","))
		} else {
			c.join(b, p.addr, signer, "bench", p.instance, sessions, mode.proto == "v1")
			if mode.proto == "v2" {
				c.index()
			}
		}
		before := p.settled(b)
		sent := c.run(p.addr, *benchRate, *benchDur, *benchPayload, false)
		after := p.stats(b)
		fwd := after.relayed - before.relayed
		cpu := (after.cpu - before.cpu).Seconds()
		want := sent * uint64(members-1)
		record(float64(fwd) / cpu)
		b.ReportMetric(float64(fwd)/cpu, "fwd/relay-cpu-s")
		b.ReportMetric(float64(fwd)/(*benchDur).Seconds(), "fwd/s")
		// The stats command itself allocates a little; over a run it is noise.
		b.ReportMetric(float64(after.mallocs-before.mallocs)/float64(after.received-before.received), "allocs/received")
		b.ReportMetric(cpu/(*benchDur).Seconds(), "relay-cpus")
		b.ReportMetric(float64(c.got.Load())/float64(want), "delivered/expected")
		b.ReportMetric(float64(c.hist.quantile(0.5).Microseconds()), "p50-µs")
		b.ReportMetric(float64(c.hist.quantile(0.99).Microseconds()), "p99-µs")
		if len(after.bounds) > 0 {
			bounds := make([]int64, len(after.bounds))
			for i, x := range after.bounds {
				bounds[i] = int64(x)
			}
			b.ReportMetric(float64(histP99(bounds, before.counts, after.counts).Microseconds()), "in-relay-p99-µs")
		}
		if after.dropped != before.dropped {
			b.Logf("relay dropped %d datagrams", after.dropped-before.dropped)
		}
	})
}

// BenchmarkRelayWorkers runs the v2 relay with 1 and with GOMAXPROCS workers (Config.Workers),
// next to the bare forwarder, in interleaved rounds; offer a rate above one worker's capacity
// with -relay.rate to see saturation. Each contender reports forwarded/s, p50/p99 latency and
// relay CPUs; the ratios line gives the median per-round ratios of forwarded per relay CPU-second.
//
//	go test -run '^$' -bench BenchmarkRelayWorkers -benchtime 1x -relay.rate 100000 ./gameserver
func BenchmarkRelayWorkers(b *testing.B) {
	signer, jwks := benchSigner(b)
	sessions, members := *benchSessions, *benchMembers
	n := runtime.GOMAXPROCS(0)
	perCPU := map[string][]float64{}
	for round := range *benchRounds {
		for _, c := range []struct {
			name    string
			proto   string
			workers int
		}{{"bare", "bare", 1}, {"w1", "v2", 1}, {fmt.Sprintf("w%d", n), "v2", n}} {
			// relayTracing without sampling only passes the environment (tracing stays off).
			env := &relayTracing{env: []string{"KUMI_RELAY_WORKERS=" + strconv.Itoa(c.workers)}}
			runRelayContender(b, fmt.Sprintf("%s/r%d/%dx%d/%.0fpps", c.name, round, sessions, members, *benchRate), c.proto, IOBatch, signer, jwks, env,
				func(v float64) { perCPU[c.name] = append(perCPU[c.name], v) })
		}
	}
	b.Run("ratios", func(b *testing.B) {
		wn := fmt.Sprintf("w%d", n)
		k := len(perCPU["bare"])
		if k == 0 || len(perCPU["w1"]) != k || len(perCPU[wn]) != k {
			b.Fatalf("missing a contender: %v", perCPU)
		}
		ratio := func(a, c string) float64 {
			r := make([]float64, k)
			for i := range k {
				r[i] = perCPU[a][i] / perCPU[c][i]
			}
			slices.Sort(r)
			b.Logf("%s/%s fwd per relay CPU-s by round (sorted): %.3f", a, c, r)
			return r[k/2]
		}
		b.ReportMetric(ratio("w1", "bare"), "w1/bare")
		b.ReportMetric(ratio(wn, "bare"), "wN/bare")
		b.ReportMetric(ratio(wn, "w1"), "wN/w1")
	})
}

// BenchmarkIdleSessionMemory measures the relay process's heap per idle session (members joined,
// no traffic), for 1 and 4 members per session.
//
//	go test -run '^$' -bench BenchmarkIdleSessionMemory -benchtime 1x ./gameserver
func BenchmarkIdleSessionMemory(b *testing.B) {
	signer, jwks := benchSigner(b)
	const sessions = 1000
	for _, members := range []int{1, 4} {
		b.Run(fmt.Sprintf("%dx%d", sessions, members), func(b *testing.B) {
			p := startRelay(b, "v2", IOBatch, sessions, jwks)
			before := p.stats(b)
			c := newCrowd(b, members)
			c.join(b, p.addr, signer, "bench", p.instance, sessions, false)
			after := p.stats(b)
			if after.sessions != sessions || after.members != sessions*members {
				b.Fatalf("relay holds %d sessions, %d members", after.sessions, after.members)
			}
			per := float64(after.heap-before.heap) / sessions
			b.ReportMetric(per, "heap-B/session")
			b.ReportMetric(per/float64(members), "heap-B/member")
		})
	}
}

var drainMembers = flag.Int("drain.members", 4, "members per session in BenchmarkDrainMoves")

// BenchmarkDrainMoves drains a server holding 200 sessions: after the grace period every session
// is moved through a real director peer to a second server, every member gets MOVE and rejoins
// there (the Go client follows MOVE). Reports the time from Drain to empty and how far past the
// grace period that was.
//
//	go test -run '^$' -bench BenchmarkDrainMoves -benchtime 1x ./gameserver
func BenchmarkDrainMoves(b *testing.B) {
	const sessions = 200
	members := *drainMembers
	for b.Loop() {
		signer := newSigner(b)
		d, daddr := startDirector(b, signer)
		bsrv := startServer(b, benchDrainConfig("gs-b", ""), signer)
		d.mu.Lock()
		d.target = bsrv
		d.mu.Unlock()
		cfg := benchDrainConfig("gs-a", daddr)
		a := startServer(b, cfg, signer)

		conns := make([]*client.Conn, sessions*members)
		var wg sync.WaitGroup
		work := make(chan int)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range work {
					tok := mint(b, signer, "gs-a", fmt.Sprintf("s%d", k/members), fmt.Sprintf("p%d", k), time.Minute)
					c, err := client.Dial(context.Background(), a.Addr(), tok, client.Default())
					if err != nil {
						b.Error(err)
						continue
					}
					conns[k] = c
				}
			}()
		}
		for k := range conns {
			work <- k
		}
		close(work)
		wg.Wait()
		if b.Failed() {
			return
		}
		for _, c := range conns {
			b.Cleanup(func() { c.Close() })
		}
		var moved atomic.Int64
		var ewg sync.WaitGroup
		for _, c := range conns {
			ewg.Add(1)
			go func() {
				defer ewg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainGrace+10*time.Second)
				defer cancel()
				for {
					e, err := c.Recv(ctx)
					if err != nil {
						return
					}
					if e.Kind == client.EventMoved && e.Err == nil {
						moved.Add(1)
						return
					}
				}
			}()
		}
		start := time.Now()
		a.Drain("benchmark")
		<-a.Drained()
		took := time.Since(start)
		ewg.Wait()
		if got := moved.Load(); got != int64(len(conns)) {
			b.Fatalf("%d of %d members moved", got, len(conns))
		}
		if st := bsrv.Stats(); st.Sessions != sessions || st.Members != len(conns) {
			b.Fatalf("target holds %+v", st)
		}
		b.ReportMetric(took.Seconds(), "drain-s")
		b.ReportMetric(float64((took - cfg.DrainGrace).Milliseconds()), "ms-past-grace")
		b.ReportMetric(float64(moved.Load()), "members-moved")
	}
}

func benchDrainConfig(name, director string) Config {
	cfg := testConfig(name)
	cfg.Director = director
	cfg.DrainGrace = time.Second
	cfg.MemberTimeout = 30 * time.Second
	cfg.Keepalive = 5 * time.Second
	cfg.JoinRate, cfg.JoinBurst = 1e5, 1e5
	cfg.JoinSourceRate, cfg.JoinSourceBurst = 1e5, 1e5
	return cfg
}

// BenchmarkJoin measures admissions per second of an in-process server: each JOIN carries a
// distinct real EdDSA server token (minted before the timer starts) sealed to the server's
// instance key, opened (X25519) and verified by 2 admission workers, one session per JOIN; the
// cookie round trip is one per source socket.
//
//	go test -run '^$' -bench BenchmarkJoin -benchtime 2000x ./gameserver
func BenchmarkJoin(b *testing.B) {
	signer := newSigner(b)
	cfg := testConfig("gs-j")
	cfg.Capacity = b.N
	cfg.JoinRate, cfg.JoinBurst = 1e7, 1e7
	cfg.JoinSourceRate, cfg.JoinSourceBurst = 1e7, 1e7
	s := startServer(b, cfg, signer)
	c := newCrowd(b, 1)
	toks := make([][]byte, b.N)
	for i := range toks {
		toks[i] = []byte(mint(b, signer, "gs-j", fmt.Sprintf("s%d", i), fmt.Sprintf("p%d", i), time.Minute))
	}
	c.members[0] = make([]*crowdMember, b.N)
	b.ResetTimer()
	if err := c.joinSlot(c.socks[0], serverAddr(b, s), c.members[0], toks, false); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "joins/s")
}
