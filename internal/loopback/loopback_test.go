package loopback

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUpInNewNamespace: in a fresh network namespace a datagram to 127.0.0.1 cannot be sent until
// Up, and then it arrives. The namespace belongs to a locked thread that is never handed back to
// other goroutines (the sockets are made on that thread for the same reason).
func TestUpInNewNamespace(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Fatal("making a network namespace needs root (CI runs as root): run the tests as root")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := echo(); err == nil {
			t.Error("a datagram crossed lo in a new namespace before lo was up")
		}
		if err := Up(); err != nil {
			errc <- err
			return
		}
		errc <- echo()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// echo sends a datagram from a socket on 127.0.0.1 to itself and reads it back; loopback delivers
// during sendto, so the read needs no wait.
func echo() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	self, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	if err := unix.Sendto(fd, []byte("x"), 0, self); err != nil {
		return err
	}
	_, _, err = unix.Recvfrom(fd, make([]byte, 1), unix.MSG_DONTWAIT)
	return err
}
