// Package netaddr fixes a listen address before its listener exists, for addresses other processes
// must be told in advance (game servers learn the director's control address when they start).
package netaddr

import (
	"fmt"
	"net"
)

// FixPort turns host:0 into host:<a free port> and leaves any other port alone. The port is free
// when FixPort returns; another process could still take it before the caller listens, which
// a one-machine setup accepts.
func FixPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("address %q: pick a free port: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
