// Package testport picks loopback ports for tests that must name a port before anything listens
// on it: a child process, a README block run as written, a server restarted on its old address.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Free returns a port on 127.0.0.1 that is free for both TCP and UDP now, chosen below the
// kernel's ephemeral range. A port from "127.0.0.1:0" comes from that range, where the kernel also
// hands out the source ports of outgoing connections and other tests' ":0" listeners, so it can be
// taken between the pick and the bind: a README test failed that way on a loaded machine
// ("address already in use"). Below the range only another Free caller could take it, and picks
// are random over ~20k ports.
func Free(t testing.TB) int {
	t.Helper()
	lo := ephemeralLow()
	const base = 10000
	for range 200 {
		p := base + rand.IntN(lo-base)
		if free(p) {
			return p
		}
	}
	t.Fatalf("testport: no free port in %d-%d", base, lo-1)
	return 0
}

// free reports whether p can be bound on 127.0.0.1 for TCP and for UDP.
func free(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralLow is the first port of Linux's ephemeral range, or 32768 (its default) elsewhere.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= 11000 {
		return 32768
	}
	return lo
}
