package wrap

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// relay carries players' UDP datagrams between the public game port (host network) and the game
// server's port inside the sandbox's network namespace. Each player address gets its own socket
// inside the namespace, so the server sees one distinct peer per player (Unreal keys its
// connections by address) and its replies find their way back.
type relay struct {
	log     *slog.Logger
	pub     *net.UDPConn
	target  netip.AddrPort // the server's port inside the namespace
	dial    func() (*net.UDPConn, error)
	max     int
	idle    time.Duration
	mu      sync.Mutex
	clients map[netip.AddrPort]*relayClient
	wg      sync.WaitGroup
}

type relayClient struct {
	conn *net.UDPConn
	last time.Time // guarded by relay.mu
}

func (r *relay) run(ctx context.Context) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.sweep(ctx)
	}()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pub.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("relay: public socket", "err", err)
			}
			break
		}
		c := r.client(from)
		if c == nil {
			continue
		}
		_, _ = c.conn.Write(buf[:n])
	}
	r.mu.Lock()
	for _, c := range r.clients {
		c.conn.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// client returns the inner socket of a player address, creating it on first contact.
func (r *relay) client(from netip.AddrPort) *relayClient {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.clients[from]; c != nil {
		c.last = now
		return c
	}
	if len(r.clients) >= r.max {
		return nil
	}
	conn, err := r.dial()
	if err != nil {
		r.log.Warn("relay: inner socket", "err", err)
		return nil
	}
	c := &relayClient{conn: conn, last: now}
	r.clients[from] = c
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ECONNREFUSED while the server is not bound yet
			}
			_, _ = r.pub.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return c
}

// sweep forgets player addresses silent for longer than idle.
func (r *relay) sweep(ctx context.Context) {
	t := time.NewTicker(r.idle / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.mu.Lock()
			for a, c := range r.clients {
				if now.Sub(c.last) > r.idle {
					c.conn.Close()
					delete(r.clients, a)
				}
			}
			r.mu.Unlock()
		}
	}
}
