// Package netaddr turns a listener's address into one other local processes can be told to dial
// (game servers learn the director's control address when they start).
package netaddr

import "net"

// Dialable returns a's host:port with a wildcard host (0.0.0.0, ::) replaced by 127.0.0.1,
// where a listener on every interface is reachable from this machine. Callers bind first and
// tell the address afterwards: picking a free port, releasing it and binding it again later let
// another process take it in between, which failed a CI run ("address already in use").
func Dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
