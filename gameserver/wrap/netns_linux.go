package wrap

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/kumi-dev/kumi/internal/loopback"
	"golang.org/x/sys/unix"
)

// netns is a fresh network namespace holding only a loopback interface, owned by one locked OS
// thread. Sockets created by fn passed to do live in that namespace for their whole life, which is
// how the wrapper reaches the sandboxed server (relay sockets, the admit listener) while the
// server reaches nothing else: the namespace has no route anywhere. Processes started inside do
// inherit the namespace (Linux namespaces are per thread; fork copies the calling thread's).
type netns struct {
	reqs chan func()
	done chan struct{}
}

func newNetns() (*netns, error) {
	n := &netns{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends the thread instead of
		// handing a thread in the wrong namespace to other goroutines.
		runtime.LockOSThread()
		defer close(n.done)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("wrap: new network namespace (needs CAP_SYS_ADMIN): %w", err)
			return
		}
		if err := loopback.Up(); err != nil {
			ready <- fmt.Errorf("wrap: sandbox namespace: %w", err)
			return
		}
		ready <- nil
		for fn := range n.reqs {
			fn()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return n, nil
}

// do runs fn on the namespace's thread.
func (n *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	select {
	case n.reqs <- func() { errc <- fn() }:
	case <-n.done:
		return errors.New("wrap: network namespace closed")
	}
	return <-errc
}

// close ends the thread; the namespace goes when its last socket and process are gone.
func (n *netns) close() { close(n.reqs); <-n.done }
