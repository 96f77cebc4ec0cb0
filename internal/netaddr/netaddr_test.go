package netaddr

import (
	"net"
	"testing"
)

func TestDialable(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4567}, "127.0.0.1:4567"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 4567}, "127.0.0.1:4567"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, "127.0.0.1:80"},
		{&net.TCPAddr{Port: 80}, "127.0.0.1:80"},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 9}, "10.1.2.3:9"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "[::1]:9"},
	} {
		if got := Dialable(tc.addr); got != tc.want {
			t.Errorf("Dialable(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	// A port-0 listen address becomes the port the listener got.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := Dialable(l.Addr()); got != l.Addr().String() {
		t.Errorf("Dialable(%v) = %q", l.Addr(), got)
	}
}
