package gameserver

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/kumi-dev/kumi/gameserver/wire"
)

// relayer is one relay worker's state (Config.Workers of them, each with its own socket). A worker
// holds Server.mu for reading while it handles one batch, so the membership it sees cannot change
// under it, and writers (admission, sweep) wait at most a batch. Members' replay windows and rate
// buckets are shared between workers under member.mu (with one worker, it owns them unlocked).
type relayer struct {
	s *Server
	// conn is this worker's socket: it reads from it and sends from it (every worker's socket is
	// bound to the same address, so members see the same source either way).
	conn *net.UDPConn
	// shared: other workers handle datagrams of the same members (Config.Workers > 1).
	shared  bool
	scratch wire.Scratch
	maxDg   int
	batch   bool

	// Batch mode: outgoing datagrams collected across a read batch (obufs[:k], queued in w), sent
	// by sendmmsg calls of at most chunk (BatchSize) datagrams each.
	w     batchWriter
	obufs [][]byte
	k     int
	chunk int
	// Single mode: one buffer, one sendto per datagram.
	obuf []byte

	// JOIN checks before any per-source state: the address cookie, then the source's bucket.
	cookies   *wire.Cookies
	cookieBuf [wire.CookieReplyLen]byte

	leaves   []*member
	received uint64
	relayed  uint64
	dropped  [dropReasons]uint64
}

func newRelayer(s *Server) *relayer { return newWorker(s, s.conn) }

func newWorker(s *Server, conn *net.UDPConn) *relayer {
	return &relayer{s: s, conn: conn, shared: len(s.conns) > 1, maxDg: s.cfg.maxDatagram(), batch: s.cfg.IO == IOBatch,
		cookies: wire.NewCookies(s.cookieSecret)}
}

// relay runs one relay worker on conn.
func (s *Server) relay(conn *net.UDPConn) error {
	r := newWorker(s, conn)
	if err := r.buffers(); err != nil {
		return err
	}
	if r.batch {
		return r.runBatch()
	}
	return r.runSingle()
}

// buffers allocates the outgoing datagram buffers once: the hot path reuses them.
func (r *relayer) buffers() error {
	s := r.s
	outSize := wire.Overhead + s.cfg.MaxPayload
	if r.batch {
		// A read batch's whole fan-out is sealed first and then handed to the kernel by
		// back-to-back sendmmsg calls of BatchSize datagrams, as the bare forwarder does
		// (bench_test.go): alternating sealing and sending every BatchSize datagrams made each
		// send dearer (the kernel's send path and the cipher evict each other from the caches, and
		// receivers fall asleep between the sends). The first datagram waits for the rest of the
		// batch's sealing, ~0.2 µs a recipient, far below a send's cost.
		r.chunk = s.cfg.BatchSize
		n := min(s.cfg.BatchSize*max(1, s.cfg.MaxMembers-1), maxOut)
		w, err := newBatchWriter(r.conn, n)
		if err != nil {
			return err
		}
		r.w = w
		r.obufs = make([][]byte, n)
		for i := range r.obufs {
			r.obufs[i] = make([]byte, 0, outSize)
		}
		return nil
	}
	r.obuf = make([]byte, 0, outSize)
	return nil
}

// maxOut bounds the datagrams one read batch may queue before they are sent (at 1,230 bytes a
// buffer with the default max-payload, 1.2 MiB).
const maxOut = 1024

// batchReader reads up to len(bufs) datagrams per call.
type batchReader interface {
	read() (int, error)
	packet(i int) ([]byte, netip.AddrPort)
}

// batchWriter sends datagrams queued in numbered slots, several per system call where the
// platform allows, without waiting for a full socket send buffer (MSG_DONTWAIT: EAGAIN).
type batchWriter interface {
	// set queues p (which must stay untouched until written) for to in slot i.
	set(i int, p []byte, to netip.AddrPort)
	// write sends slots [from, to) and returns how many of them, in order, the kernel took.
	write(from, to int) (int, error)
}

func (r *relayer) runBatch() error {
	s := r.s
	bufs := make([][]byte, s.cfg.BatchSize)
	for i := range bufs {
		// One byte more than the largest valid datagram: a longer one shows up as oversized.
		bufs[i] = make([]byte, r.maxDg+1)
	}
	br, err := newBatchReader(r.conn, bufs)
	if err != nil {
		return err
	}
	for {
		n, err := br.read()
		if err != nil {
			if errClosed(err) || s.ctx.Err() != nil {
				return nil
			}
			s.log.Warn("relay read failed", "err", err)
			continue
		}
		now := time.Now().UnixNano()
		s.mu.RLock()
		for i := range n {
			p, from := br.packet(i)
			if !from.IsValid() {
				continue
			}
			r.handle(p, from, now)
		}
		s.mu.RUnlock()
		// Counters first: once an answer to a datagram is out, its predecessors are counted.
		r.publish()
		r.flush()
		s.m.batch.Observe(float64(time.Now().UnixNano()-now) / 1e9)
		r.afterBatch()
	}
}

func (r *relayer) runSingle() error {
	s := r.s
	buf := make([]byte, r.maxDg+1)
	for {
		n, ap, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errClosed(err) || s.ctx.Err() != nil {
				return nil
			}
			s.log.Warn("relay read failed", "err", err)
			continue
		}
		now := time.Now().UnixNano()
		s.mu.RLock()
		r.handle(buf[:n], ap, now)
		s.mu.RUnlock()
		s.m.batch.Observe(float64(time.Now().UnixNano()-now) / 1e9)
		r.publish()
		r.afterBatch()
	}
}

// handle processes one datagram from ap.
func (r *relayer) handle(p []byte, ap netip.AddrPort, now int64) {
	s := r.s
	r.received++
	if len(p) > r.maxDg {
		r.dropped[dropOversized]++
		return
	}
	typ, err := wire.PeekType(p)
	if err != nil {
		if err == wire.ErrVersion {
			r.otherVersion(p, ap)
		}
		r.drop(err)
		return
	}
	if typ == wire.TypeJoin {
		r.join(p, ap)
		return
	}
	if !typ.Authenticated() {
		r.dropped[dropUnknownType]++
		return
	}
	h, err := wire.ParseHeader(p)
	if err != nil {
		r.drop(err)
		return
	}
	m := s.members[h.Member]
	if m == nil {
		r.dropped[dropUnknownMember]++
		return
	}
	if r.shared {
		// Another worker may hold datagrams of this member (a NAT rebinding, or a copy replayed
		// from another address hashed to another socket): check, open and accept must be one
		// step, or both could pass the window with the same sequence number.
		m.mu.Lock()
	}
	body, drop := r.authenticate(m, h, p, now)
	if r.shared {
		m.mu.Unlock()
	}
	if drop == dropReplay || drop == dropAuth {
		r.dropped[drop]++
		return
	}
	if now-m.seen.Load() >= seenResolution {
		// A load instead of a locked store for most datagrams of a talking member: only the
		// sweep reads seen, against timeouts of seconds.
		m.seen.Store(now)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if cur := m.addr.Load(); cur.ap != ap {
		// Authenticated packets from a new address: the client's NAT mapping changed.
		m.addr.Store(&peer{ap: ap})
	}
	if drop != dropReasons {
		r.dropped[drop]++ // authentic, but oversized or beyond the member's rate
		return
	}
	switch h.Type {
	case wire.TypeData:
		for _, o := range m.sess.members {
			if o != m {
				r.send(o, wire.TypeData, m.id, body)
			}
		}
	case wire.TypeKeepalive:
		r.send(m, wire.TypeKeepalive, 0, nil)
	case wire.TypeLeave:
		r.leaves = append(r.leaves, m)
	default:
		r.dropped[dropBadType]++
	}
}

// authenticate checks p against m's replay window and key, records its sequence number, and for
// DATA checks the payload size and takes a token from m's bucket. It returns the body and why to
// drop the datagram (dropReplay, dropAuth: not authentic; dropOversized, dropRateLimited:
// authentic), or dropReasons to keep it. The caller holds m.mu when workers share members.
func (r *relayer) authenticate(m *member, h wire.Header, p []byte, now int64) ([]byte, dropReason) {
	if !m.window.Check(h.Seq) {
		return nil, dropReplay
	}
	body, err := m.key.OpenParsed(&r.scratch, wire.ToServer, h, p)
	if err != nil {
		return nil, dropAuth
	}
	m.window.Accept(h.Seq)
	if h.Type == wire.TypeData {
		if len(body) > r.s.cfg.MaxPayload {
			return body, dropOversized
		}
		if !r.allow(m, now) {
			return body, dropRateLimited
		}
	}
	return body, dropReasons
}

// seenResolution is how stale member.seen may be: a member may be timed out up to this much
// early, against member-timeouts of seconds (above keepalive ≥ 1 ms, see Config.Validate).
const seenResolution = int64(time.Millisecond)

// allow takes one token from m's DATA bucket: a member cannot make the server fan out more than
// member-rate × (members − 1) datagrams per second.
func (r *relayer) allow(m *member, now int64) bool {
	rate := r.s.cfg.MemberRate
	if rate == 0 {
		return true
	}
	burst := float64(r.s.cfg.MemberBurst)
	if m.tokensAt == 0 {
		m.tokens = burst
	} else {
		m.tokens = min(burst, m.tokens+rate*float64(now-m.tokensAt)/1e9)
	}
	m.tokensAt = now
	if m.tokens < 1 {
		return false
	}
	m.tokens--
	return true
}

func (r *relayer) drop(err error) {
	switch err {
	case wire.ErrVersion:
		r.dropped[dropVersion]++
	default:
		r.dropped[dropShort]++
	}
}

// versionText tells a client of another protocol version what to do.
const versionText = "this game server speaks kumi protocol v2 only: update the client"

// otherVersion answers a JOIN of another protocol version with REFUSE version, in no more bytes
// than it sent. Every version keeps "version type nonce" at the start of JOIN, and REFUSE has the
// same layout in v1 and v2, so a v1 client reads the refusal (and its text) in its own format.
func (r *relayer) otherVersion(p []byte, ap netip.AddrPort) {
	if len(p) < wire.RefuseLen("") || wire.Type(p[1]) != wire.TypeJoin {
		return
	}
	var nonce [wire.NonceLen]byte
	copy(nonce[:], p[2:])
	text := versionText[:min(len(versionText), len(p)-wire.RefuseLen(""))]
	ver := byte(wire.Version)
	if p[0] == wire.VersionV1 {
		ver = wire.VersionV1
	}
	r.s.m.joins[wire.RefuseVersion].Add(1)
	_, _ = r.conn.WriteToUDPAddrPort(wire.AppendRefuseVersion(nil, ver, wire.Refuse{Nonce: nonce, Code: wire.RefuseVersion, Text: text}), ap)
}

// join checks a JOIN's cookie and its source's bucket, then queues it for verification. Until
// the source has shown it receives what is sent to it (the cookie), the server keeps nothing and
// answers only with a COOKIE, smaller than any JOIN.
func (r *relayer) join(p []byte, ap netip.AddrPort) {
	s := r.s
	j, err := wire.ParseJoin(p)
	if err != nil {
		r.dropped[dropMalformedJoin]++
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	now := time.Now()
	if !r.cookies.Check(ap, j.Cookie, now) {
		s.m.cookies.Add(1)
		_, _ = r.conn.WriteToUDPAddrPort(wire.AppendCookie(r.cookieBuf[:0], wire.Cookie{Nonce: j.Nonce, Cookie: r.cookies.Make(ap, now)}), ap)
		return
	}
	s.sourcesMu.Lock()
	ok := s.sources.allow(ap.Addr(), now)
	s.sourcesMu.Unlock()
	if !ok {
		s.m.sourceLimited.Add(1)
		s.m.joins[wire.RefuseBusy].Add(1)
		_, _ = r.conn.WriteToUDPAddrPort(refusePacket(j.Nonce, len(p), wire.RefuseBusy, "too many JOINs from your address; retry shortly"), ap)
		return
	}
	j.Sealed = bytes.Clone(j.Sealed) // the read buffer is reused
	req := joinReq{join: j, from: newPeer(ap), size: len(p)}
	select {
	case s.admitCh <- req:
	default:
		r.dropped[dropJoinBacklog]++
		s.m.joins[wire.RefuseBusy].Add(1)
		s.sendPlain(req.from, refusePacket(j.Nonce, req.size, wire.RefuseBusy, "admission backlog full; retry shortly"))
	}
}

// send seals one datagram for member to (its key, its sequence) and queues or sends it.
func (r *relayer) send(to *member, t wire.Type, from uint32, body []byte) {
	h := wire.Header{Type: t, Member: from, Seq: to.sendSeq.Add(1)}
	dst := to.addr.Load()
	if !r.batch {
		r.obuf = to.key.SealWith(&r.scratch, r.obuf[:0], wire.ToClient, h, body)
		if _, err := r.conn.WriteToUDPAddrPort(r.obuf, dst.ap); err != nil {
			r.dropped[dropSendError]++
			return
		}
		r.relayed++
		return
	}
	r.obufs[r.k] = to.key.SealWith(&r.scratch, r.obufs[r.k][:0], wire.ToClient, h, body)
	r.w.set(r.k, r.obufs[r.k], dst.ap)
	r.k++
	if r.k == len(r.obufs) {
		r.flush()
	}
}

func (r *relayer) flush() {
	sent := 0
	for sent < r.k {
		// MSG_DONTWAIT: a full socket send buffer drops this batch's rest instead of stalling
		// every session behind it (late voice frames are worthless anyway).
		n, err := r.w.write(sent, min(sent+r.chunk, r.k))
		if err != nil {
			if errClosed(err) {
				break
			}
			n = max(n, 0)
			r.relayed += uint64(n)
			sent += n
			if errors.Is(err, syscall.EAGAIN) {
				r.dropped[dropSendBuffer] += uint64(r.k - sent)
				break
			}
			// Skip the datagram the kernel refused and carry on with the rest.
			r.dropped[dropSendError]++
			sent++
			continue
		}
		r.relayed += uint64(n)
		sent += n
	}
	r.k = 0
}

// publish adds the batch's receive and drop counts to the server's counters.
func (r *relayer) publish() {
	s := r.s
	s.m.received.Add(r.received)
	r.received = 0
	for i, n := range r.dropped {
		if n > 0 {
			s.m.dropped[i].Add(n)
			r.dropped[i] = 0
		}
	}
}

// afterBatch applies LEAVEs (they need the write lock) and publishes the relayed count.
func (r *relayer) afterBatch() {
	s := r.s
	if len(r.leaves) > 0 {
		s.mu.Lock()
		for _, m := range r.leaves {
			reason := leaveLeft
			switch m.pendingType {
			case wire.TypeMove:
				reason = leaveMoved
			case wire.TypeReconnect:
				reason = leaveReconnected
			}
			s.removeLocked(m, reason)
		}
		s.mu.Unlock()
		clear(r.leaves)
		r.leaves = r.leaves[:0]
	}
	s.relayed.Add(r.relayed)
	r.relayed = 0
	// Send errors counted by flush.
	r.publish()
}
