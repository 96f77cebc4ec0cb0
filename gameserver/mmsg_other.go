//go:build !linux

package gameserver

import (
	"net"
	"net/netip"

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
