package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/token"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Config tunes a Conn; Default holds the defaults.
type Config struct {
	// JoinTimeout bounds one join (all JOIN retransmissions) when the context has no earlier deadline.
	JoinTimeout time.Duration
	// JoinRetry is the first JOIN retransmission interval; each further one doubles it (with 20%
	// jitter) up to 8×JoinRetry, so a loaded server is not flooded with retransmissions while the
	// join still has JoinTimeout to succeed.
	JoinRetry time.Duration
	// FollowMoves makes the Conn act on MOVE itself: LEAVE the old server, join the new one with
	// the new token, then report EventMoved. Off, it only reports EventMove.
	FollowMoves bool
	// Events is the event queue length; DATA arriving while it is full is dropped (counted).
	Events int
}

// Default returns the defaults: 15 s join timeout, JOIN resent after 250 ms backing off to 2 s,
// moves followed. The timeout leaves a loaded server (or host) room to answer a few resends.
func Default() Config {
	return Config{JoinTimeout: 15 * time.Second, JoinRetry: 250 * time.Millisecond, FollowMoves: true, Events: 256}
}

// EventKind says what an Event carries.
type EventKind int

const (
	// EventData: Payload from member From of the session.
	EventData EventKind = iota + 1
	// EventMove: the server asked us to rejoin at Addr with Token (followed when FollowMoves).
	EventMove
	// EventMoved: we rejoined at Addr after a MOVE (Err set if that failed; the Conn is then idle).
	EventMoved
	// EventReconnect: the server ended our stay (Code, Text); ask for a new assignment.
	EventReconnect
	// EventLost: nothing heard from the server for its member timeout.
	EventLost
)

func (k EventKind) String() string {
	switch k {
	case EventData:
		return "data"
	case EventMove:
		return "move"
	case EventMoved:
		return "moved"
	case EventReconnect:
		return "reconnect"
	case EventLost:
		return "lost"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something the server sent.
type Event struct {
	Kind    EventKind
	From    uint32 // EventData: the sending member's id
	Payload []byte // EventData
	Addr    string // EventMove, EventMoved
	Token   string // EventMove
	Code    wire.ReconnectCode
	Text    string
	Err     error // EventMoved: the rejoin failed
}

// RefusedError is a JOIN the server refused.
type RefusedError struct {
	Code wire.RefuseCode
	Text string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("gameserver refused join: %s: %s", e.Code, e.Text)
}

// ErrClosed is returned by a Conn after Close, Leave, or a RECONNECT.
var ErrClosed = errors.New("client: connection closed")

// link is one admission at one server.
type link struct {
	server     netip.AddrPort
	member     uint32
	key        *wire.Key
	seq        atomic.Uint64
	window     wire.Window // reader goroutine only
	maxPayload int
	keepalive  time.Duration
	timeout    time.Duration
}

type answer struct {
	accept []byte // the ACCEPT datagram, opened by the join's Initiator
	refuse *wire.Refuse
	cookie *wire.Cookie
}

// Conn is one client's membership of a session. Send, Recv and Leave are safe for concurrent use.
type Conn struct {
	cfg    Config
	sock   *net.UDPConn
	events chan Event
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu       sync.Mutex
	cur      *link
	old      []*link // earlier servers, to answer their retransmitted MOVE/RECONNECT with LEAVE
	pending  map[[wire.NonceLen]byte]chan answer
	moving   string // token of the move being followed
	sendBuf  []byte
	lastSent time.Time
	heard    atomic.Int64 // unix ns of the last authenticated packet from the server

	// DroppedEvents counts DATA dropped because the event queue was full.
	DroppedEvents atomic.Uint64
}

// Dial joins the session named in token at the server addr (host:port) and returns once
// ACCEPTed. A refusal is a *RefusedError.
func Dial(ctx context.Context, addr, token string, cfg Config) (*Conn, error) {
	ap, err := resolve(addr)
	if err != nil {
		return nil, err
	}
	network := "udp4"
	if ap.Addr().Is6() {
		network = "udp6"
	}
	sock, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("client: open socket: %w", err)
	}
	c := &Conn{
		cfg:     cfg,
		sock:    sock,
		events:  make(chan Event, max(cfg.Events, 1)),
		closed:  make(chan struct{}),
		pending: make(map[[wire.NonceLen]byte]chan answer),
	}
	c.wg.Add(1)
	go c.readLoop()
	l, err := c.join(ctx, ap, token)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.mu.Lock()
	c.cur = l
	c.mu.Unlock()
	c.wg.Add(1)
	go c.keepaliveLoop(l.keepalive)
	return c, nil
}

func resolve(addr string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("client: server address %q: %w", addr, err)
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// join sends JOIN until ACCEPT or REFUSE arrives, or the join times out.
func (c *Conn) join(ctx context.Context, server netip.AddrPort, tok string) (*link, error) {
	if c.cfg.JoinTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.JoinTimeout)
		defer cancel()
	}
	ins, err := token.UnverifiedServerInstance(tok)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	hs, err := wire.NewInitiator(ins)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	pkt, err := hs.Join([]byte(tok))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	nonce := hs.Nonce()
	ch := make(chan answer, 4)
	c.mu.Lock()
	c.pending[nonce] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, nonce)
		c.mu.Unlock()
	}()
	first := max(c.cfg.JoinRetry, 10*time.Millisecond)
	backoff := wait.Backoff{Duration: first, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 8 * first}
	retry := time.NewTimer(backoff.Step())
	defer retry.Stop()
	send := true
	for {
		if send {
			if _, err := c.sock.WriteToUDPAddrPort(pkt, server); err != nil {
				return nil, fmt.Errorf("client: send JOIN to %s: %w", server, err)
			}
		}
		send = true
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("client: no answer to JOIN from %s: %w", server, ctx.Err())
		case <-c.closed:
			return nil, ErrClosed
		case a := <-ch:
			switch {
			case a.cookie != nil:
				// The server's address check: resend at once with its cookie.
				wire.SetJoinCookie(pkt, a.cookie.Cookie)
				continue
			case a.refuse != nil && a.refuse.Code == wire.RefuseBusy:
				// Transient (the server's JOIN rate limits or backlog) and the token was not used:
				// keep resending until the join times out.
				select {
				case <-ctx.Done():
					return nil, &RefusedError{Code: a.refuse.Code, Text: a.refuse.Text}
				case <-c.closed:
					return nil, ErrClosed
				case <-retry.C:
					retry.Reset(backoff.Step())
				}
				continue
			case a.refuse != nil:
				return nil, &RefusedError{Code: a.refuse.Code, Text: a.refuse.Text}
			}
			acc, keys, err := hs.Accept(a.accept)
			if err != nil {
				// Not sealed for this join (forged or corrupted): keep waiting for the real one.
				send = false
				continue
			}
			l := &link{
				server:     server,
				member:     acc.MemberID,
				key:        wire.NewKey(keys),
				maxPayload: int(acc.MaxPayload),
				keepalive:  acc.Keepalive,
				timeout:    acc.Timeout,
			}
			clear(keys[:])
			c.heard.Store(time.Now().UnixNano())
			return l, nil
		case <-retry.C:
			retry.Reset(backoff.Step())
		}
	}
}

// MemberID is this client's member id at its current server (0 while between servers).
func (c *Conn) MemberID() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return 0
	}
	return c.cur.member
}

// Server is the address of the current server.
func (c *Conn) Server() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ""
	}
	return c.cur.server.String()
}

// LocalAddr is the client's own UDP address.
func (c *Conn) LocalAddr() string { return c.sock.LocalAddr().String() }

// Send relays payload to the other members of the session.
func (c *Conn) Send(payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.cur
	if l == nil {
		return ErrClosed
	}
	if len(payload) > l.maxPayload {
		return fmt.Errorf("client: payload of %d bytes exceeds the server's limit of %d", len(payload), l.maxPayload)
	}
	return c.sendLocked(l, wire.TypeData, payload)
}

func (c *Conn) sendLocked(l *link, t wire.Type, body []byte) error {
	c.sendBuf = l.key.Seal(c.sendBuf[:0], wire.ToServer, wire.Header{Type: t, Member: l.member, Seq: l.seq.Add(1)}, body)
	c.lastSent = time.Now()
	if _, err := c.sock.WriteToUDPAddrPort(c.sendBuf, l.server); err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	return nil
}

// Recv returns the next event.
func (c *Conn) Recv(ctx context.Context) (Event, error) {
	select {
	case e := <-c.events:
		return e, nil
	default:
	}
	select {
	case e := <-c.events:
		return e, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	case <-c.closed:
		return Event{}, ErrClosed
	}
}

// Leave tells the server this member leaves, then closes the Conn.
func (c *Conn) Leave() error {
	c.mu.Lock()
	var err error
	if c.cur != nil {
		err = c.sendLocked(c.cur, wire.TypeLeave, nil)
		c.cur = nil
	}
	c.mu.Unlock()
	c.Close()
	return err
}

// Close releases the socket without telling the server (it times the member out).
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.sock.Close()
	})
	c.wg.Wait()
	return nil
}

func (c *Conn) emit(e Event, mayDrop bool) {
	if mayDrop {
		select {
		case c.events <- e:
		default:
			c.DroppedEvents.Add(1)
		}
		return
	}
	select {
	case c.events <- e:
	case <-c.closed:
	}
}

func (c *Conn) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	var scratch wire.Scratch
	for {
		n, from, err := c.sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-c.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := buf[:n]
		typ, err := wire.PeekType(p)
		if err != nil {
			continue
		}
		switch typ {
		case wire.TypeAccept:
			if a, err := wire.ParseAcceptHeader(p); err == nil {
				c.answer(a.Nonce, answer{accept: bytes.Clone(p)})
			}
			continue
		case wire.TypeRefuse:
			if r, err := wire.ParseRefuse(p); err == nil {
				c.answer(r.Nonce, answer{refuse: &r})
			}
			continue
		case wire.TypeCookie:
			if ck, err := wire.ParseCookie(p); err == nil {
				c.answer(ck.Nonce, answer{cookie: &ck})
			}
			continue
		}
		if !typ.Authenticated() {
			continue
		}
		c.handle(p, from, &scratch)
	}
}

func (c *Conn) answer(nonce [wire.NonceLen]byte, a answer) {
	c.mu.Lock()
	ch := c.pending[nonce]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- a:
		default:
		}
	}
}

// handle authenticates a server packet with the current key, else an earlier server's.
func (c *Conn) handle(p []byte, _ netip.AddrPort, scratch *wire.Scratch) {
	c.mu.Lock()
	links := make([]*link, 0, 1+len(c.old))
	if c.cur != nil {
		links = append(links, c.cur)
	}
	links = append(links, c.old...)
	c.mu.Unlock()
	var orig []byte
	if len(links) > 1 {
		// Open decrypts in place and may wipe a packet that fails: keep the datagram to try the
		// earlier servers' keys on.
		orig = bytes.Clone(p)
	}
	for i, l := range links {
		if i > 0 {
			copy(p, orig)
		}
		h, body, err := l.key.Open(scratch, wire.ToClient, p)
		if err != nil || !l.window.Accept(h.Seq) {
			continue
		}
		current := i == 0 && c.isCurrent(l)
		if !current {
			// An earlier server still retransmitting MOVE or RECONNECT: acknowledge again.
			if h.Type == wire.TypeMove || h.Type == wire.TypeReconnect {
				c.mu.Lock()
				_ = c.sendLocked(l, wire.TypeLeave, nil)
				c.mu.Unlock()
			}
			return
		}
		c.heard.Store(time.Now().UnixNano())
		switch h.Type {
		case wire.TypeData:
			c.emit(Event{Kind: EventData, From: h.Member, Payload: append([]byte(nil), body...)}, true)
		case wire.TypeKeepalive:
		case wire.TypeMove:
			mv, err := wire.ParseMove(body)
			if err != nil {
				return
			}
			c.onMove(l, mv)
		case wire.TypeReconnect:
			r, err := wire.ParseReconnect(body)
			if err != nil {
				return
			}
			c.mu.Lock()
			_ = c.sendLocked(l, wire.TypeLeave, nil)
			c.retireLocked(l)
			c.mu.Unlock()
			c.emit(Event{Kind: EventReconnect, Code: r.Code, Text: r.Text}, false)
		}
		return
	}
}

func (c *Conn) isCurrent(l *link) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur == l
}

// retireLocked moves l from current to the answered-but-gone list (last two kept).
func (c *Conn) retireLocked(l *link) {
	if c.cur == l {
		c.cur = nil
	}
	c.old = append([]*link{l}, c.old...)
	if len(c.old) > 2 {
		c.old = c.old[:2]
	}
}

func (c *Conn) onMove(l *link, mv wire.Move) {
	c.emit(Event{Kind: EventMove, Addr: mv.Addr, Token: mv.Token}, false)
	if !c.cfg.FollowMoves {
		return
	}
	c.mu.Lock()
	if c.moving == mv.Token {
		c.mu.Unlock()
		return
	}
	c.moving = mv.Token
	// LEAVE acknowledges the MOVE; the old server stops retransmitting and frees the slot.
	_ = c.sendLocked(l, wire.TypeLeave, nil)
	c.retireLocked(l)
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ap, err := resolve(mv.Addr)
		var nl *link
		if err == nil {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-c.closed:
					cancel()
				case <-ctx.Done():
				}
			}()
			nl, err = c.join(ctx, ap, mv.Token)
			cancel()
		}
		if err == nil {
			c.mu.Lock()
			c.cur = nl
			c.mu.Unlock()
		}
		c.emit(Event{Kind: EventMoved, Addr: mv.Addr, Err: err}, false)
	}()
}

// keepaliveLoop sends KEEPALIVE when the client has been quiet for the server's keepalive
// interval, and reports EventLost once the server has been silent for its member timeout.
//
// The period comes from the first ACCEPT and is passed in: by the time this goroutine runs, a fast
// MOVE or RECONNECT may already have cleared c.cur.
func (c *Conn) keepaliveLoop(period time.Duration) {
	defer c.wg.Done()
	if period <= 0 {
		period = time.Second
	}
	t := time.NewTicker(period / 2)
	defer t.Stop()
	lost := false
	for {
		select {
		case <-c.closed:
			return
		case now := <-t.C:
			c.mu.Lock()
			l := c.cur
			if l != nil && now.Sub(c.lastSent) >= period/2 {
				_ = c.sendLocked(l, wire.TypeKeepalive, nil)
			}
			c.mu.Unlock()
			if l == nil {
				continue
			}
			silent := now.Sub(time.Unix(0, c.heard.Load()))
			if !lost && l.timeout > 0 && silent > l.timeout {
				lost = true
				c.emit(Event{Kind: EventLost, Text: fmt.Sprintf("server silent for %s", silent.Round(time.Millisecond))}, false)
			} else if silent < l.timeout {
				lost = false
			}
		}
	}
}
