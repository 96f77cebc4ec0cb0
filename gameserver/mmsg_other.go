//go:build !linux

package gameserver

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
)

// xnetReader is the portable batch reader: x/net's ReadBatch (one datagram per call where the
// platform has no recvmmsg).
type xnetReader struct {
	pc   *ipv4.PacketConn
	ms   []ipv4.Message
	bufs [][]byte
}

func newBatchReader(conn *net.UDPConn, bufs [][]byte) (batchReader, error) {
	r := &xnetReader{pc: ipv4.NewPacketConn(conn), ms: make([]ipv4.Message, len(bufs)), bufs: bufs}
	for i := range r.ms {
		r.ms[i].Buffers = [][]byte{bufs[i]}
	}
	return r, nil
}

func (r *xnetReader) read() (int, error) { return r.pc.ReadBatch(r.ms, 0) }

func (r *xnetReader) packet(i int) ([]byte, netip.AddrPort) {
	ua, _ := r.ms[i].Addr.(*net.UDPAddr)
	if ua == nil {
		return nil, netip.AddrPort{}
	}
	ap := ua.AddrPort()
	return r.bufs[i][:r.ms[i].N], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// xnetWriter is the portable batch writer: x/net's WriteBatch.
type xnetWriter struct {
	pc  *ipv4.PacketConn
	ms  []ipv4.Message
	uas []net.UDPAddr // one per slot, refilled in place: no allocation per datagram
}

func newBatchWriter(conn *net.UDPConn, n int) (batchWriter, error) {
	w := &xnetWriter{pc: ipv4.NewPacketConn(conn), ms: make([]ipv4.Message, n), uas: make([]net.UDPAddr, n)}
	for i := range w.ms {
		w.ms[i].Buffers = [][]byte{nil}
		w.uas[i].IP = make(net.IP, 0, net.IPv6len)
		w.ms[i].Addr = &w.uas[i]
	}
	return w, nil
}

func (w *xnetWriter) set(i int, p []byte, to netip.AddrPort) {
	w.ms[i].Buffers[0] = p
	ua := &w.uas[i]
	if a := to.Addr(); a.Is4() {
		b := a.As4()
		ua.IP = append(ua.IP[:0], b[:]...)
	} else {
		b := a.As16()
		ua.IP = append(ua.IP[:0], b[:]...)
	}
	ua.Port = int(to.Port())
}

func (w *xnetWriter) write(from, to int) (int, error) {
	return w.pc.WriteBatch(w.ms[from:to], syscall.MSG_DONTWAIT)
}

// defaultWorkers is Config.Workers 0: one, as reusePort has nothing to spread sockets with here.
func defaultWorkers() int { return 1 }

// reusePort: several relay workers need SO_REUSEPORT's load balancing, which is Linux's.
func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("gameserver: workers > 1 needs Linux (SO_REUSEPORT)")
}
