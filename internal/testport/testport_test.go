package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestFree: the port is outside the ephemeral range and can then be bound for TCP and UDP.
func TestFree(t *testing.T) {
	lo := ephemeralLow()
	for range 20 {
		p := Free(t)
		if p < 10000 || p >= lo {
			t.Fatalf("port %d outside 10000-%d", p, lo-1)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// Taken now: free must say so.
		if free(p) {
			t.Fatalf("port %d reported free while bound", p)
		}
		l.Close()
		u.Close()
	}
}
