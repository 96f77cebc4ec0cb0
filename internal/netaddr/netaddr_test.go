package netaddr

import (
	"net"
	"strings"
	"testing"
)

func TestFixPort(t *testing.T) {
	got, err := FixPort("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(got)
	if host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("FixPort(127.0.0.1:0) = %q", got)
	}
	l, err := net.Listen("tcp", got)
	if err != nil {
		t.Fatalf("the fixed port is not free: %v", err)
	}
	l.Close()
	if got, err := FixPort("127.0.0.1:4567"); err != nil || got != "127.0.0.1:4567" {
		t.Fatalf("a set port changed: %q %v", got, err)
	}
	if _, err := FixPort("no-port"); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Fatalf("bad address: %v", err)
	}
}
