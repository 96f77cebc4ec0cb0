//go:build linux

package gameserver

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
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
	// Raw: the socket is non-blocking, so the call never blocks; the runtime's syscall entry would
	// wake a parked sysmon on every call, which then polls every 20 µs for a millisecond (see
	// mmsgWriter.send).
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), 0, 0, 0)
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

// mmsgWriter sends datagrams with sendmmsg, MSG_DONTWAIT, to destinations it encodes itself from
// netip.AddrPort: nothing is allocated or pooled per call (x/net's WriteBatch takes message headers
// from a sync.Pool, converts every net.Addr, and wakes sysmon through the runtime's syscall entry).
type mmsgWriter struct {
	rc interface {
		Write(func(uintptr) bool) error
	}
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	// the call in flight: hdrs[from:to], and its result
	from, to, n int
	err         error
	fn          func(fd uintptr) bool // built once: a method value per call would allocate
}

func newBatchWriter(conn *net.UDPConn, n int) (batchWriter, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("gameserver: raw socket: %w", err)
	}
	w := &mmsgWriter{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
	}
	for i := range w.hdrs {
		w.hdrs[i].Hdr.Iov = &w.iovs[i]
		w.hdrs[i].Hdr.SetIovlen(1)
		w.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
	}
	w.fn = w.send
	return w, nil
}

func (w *mmsgWriter) set(i int, p []byte, to netip.AddrPort) {
	w.iovs[i].Base = unsafe.SliceData(p)
	w.iovs[i].SetLen(len(p))
	sa := &w.names[i]
	port := to.Port()
	if a := to.Addr(); a.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		sa4.Port = htons(port)
		sa4.Addr = a.As4()
		w.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		return
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(port), Addr: to.Addr().As16()}
	w.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
}

func (w *mmsgWriter) write(from, to int) (int, error) {
	w.from, w.to, w.n, w.err = from, to, 0, nil
	if err := w.rc.Write(w.fn); err != nil {
		return 0, err
	}
	return w.n, w.err
}

func (w *mmsgWriter) send(fd uintptr) bool {
	// Raw: with MSG_DONTWAIT the call never blocks (a full send buffer is EAGAIN, which the
	// caller counts as a drop). The runtime's syscall entry would wake a parked sysmon, which then
	// polls every 20 µs for a millisecond: with a relay that idles between bursts, a CPU profile
	// showed sysmon's sleeps and context switches at 10–16 % of the process's time.
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.from])), uintptr(w.to-w.from), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		w.err = errno
		return true
	}
	w.n = int(n)
	return true
}

// defaultWorkers is Config.Workers 0: a relay worker per usable core.
func defaultWorkers() int { return runtime.GOMAXPROCS(0) }

// reusePort lets several relay workers' sockets bind the same address (Config.Workers).
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("gameserver: SO_REUSEPORT: %w", serr)
	}
	return nil
}

func htons(port uint16) uint16 { return ntohs(port) }

// ntohs turns a port as the kernel stores it (network byte order) into a number.
func ntohs(port uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&port))
	return uint16(b[0])<<8 | uint16(b[1])
}
