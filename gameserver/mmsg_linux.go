//go:build linux

package gameserver

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgReader reads datagrams with recvmmsg into fixed buffers and decodes source addresses into
// netip.AddrPort, allocating nothing per datagram (x/net's ReadBatch allocates a *net.UDPAddr
// for each one, which at relay rates is most of the relay's garbage).
type mmsgReader struct {
	rc interface {
		Read(func(uintptr) bool) error
	}
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	bufs  [][]byte
	n     int
	err   error
	fn    func(fd uintptr) bool // built once: a method value per call would allocate
}

func newBatchReader(conn *net.UDPConn, bufs [][]byte) (batchReader, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("gameserver: raw socket: %w", err)
	}
	r := &mmsgReader{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, len(bufs)),
		iovs:  make([]unix.Iovec, len(bufs)),
		names: make([]unix.RawSockaddrAny, len(bufs)),
		bufs:  bufs,
	}
	for i := range bufs {
		r.iovs[i].Base = &bufs[i][0]
		r.iovs[i].SetLen(len(bufs[i]))
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
		r.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.fn = r.recv
	return r, nil
}

func (r *mmsgReader) recv(fd uintptr) bool {
	for i := range r.hdrs {
		r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrAny
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), 0, 0, 0)
	switch errno {
	case 0:
		r.n, r.err = int(n), nil
	case unix.EAGAIN, unix.EINTR:
		return false // wait for the socket to become readable again
	default:
		r.n, r.err = 0, errno
	}
	return true
}

func (r *mmsgReader) read() (int, error) {
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	return r.n, r.err
}

func (r *mmsgReader) packet(i int) ([]byte, netip.AddrPort) {
	p := r.bufs[i][:r.hdrs[i].Len]
	switch r.names[i].Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.names[i]))
		return p, netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.names[i]))
		return p, netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return p, netip.AddrPort{}
}

// ntohs turns a port as the kernel stores it (network byte order) into a number.
func ntohs(port uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&port))
	return uint16(b[0])<<8 | uint16(b[1])
}
