package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/gameserver/client"
	"github.com/kumi-dev/kumi/gameserver/wire"
	"github.com/kumi-dev/kumi/internal/token"
)

func startServer(t *testing.T) (*gameserver.Server, *token.Signer, context.CancelFunc) {
	t.Helper()
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gameserver.Default()
	cfg.ListenAddr, cfg.Name = "127.0.0.1:0", "gs-c"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := gameserver.Start(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), cfg, prometheus.NewRegistry(),
		gameserver.WithVerifier(signer.Verifier("", time.Second)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = s.Wait() })
	return s, signer, cancel
}

func mint(t *testing.T, signer *token.Signer, instance, session, player string) string {
	t.Helper()
	raw, err := signer.ServerToken(token.ServerClaims{PlayerID: player, SessionID: session, Server: "gs-c", Instance: instance, ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDialNobodyListening(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	cfg := client.Default()
	cfg.JoinTimeout = 200 * time.Millisecond
	cfg.JoinRetry = 50 * time.Millisecond
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := wire.NewInstance()
	if err != nil {
		t.Fatal(err)
	}
	tok := mint(t, signer, ins.ID(), "s1", "p1")
	if _, err := client.Dial(context.Background(), addr, tok, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if _, err := client.Dial(context.Background(), "no-port", tok, cfg); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Fatalf("bad address: %v", err)
	}
}

func TestRefusedError(t *testing.T) {
	s, _, _ := startServer(t)
	stranger, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Dial(context.Background(), s.Addr(), mint(t, stranger, s.Instance(), "s1", "p1"), client.Default())
	var re *client.RefusedError
	if !errors.As(err, &re) || re.Code != wire.RefuseBadToken || !strings.Contains(err.Error(), "bad_token") {
		t.Fatalf("err = %v", err)
	}
}

// A token that names no instance (or is no JWT) cannot be sealed to the server: Dial says so
// before sending anything.
func TestTokenWithoutInstance(t *testing.T) {
	s, signer, _ := startServer(t)
	for _, tok := range []string{mint(t, signer, "", "s1", "p1"), "not a jwt"} {
		_, err := client.Dial(context.Background(), s.Addr(), tok, client.Default())
		var re *client.RefusedError
		if err == nil || errors.As(err, &re) {
			t.Fatalf("err = %v, want a local error", err)
		}
	}
}

// A server that stops tells its members RECONNECT(shutdown).
func TestServerShutdown(t *testing.T) {
	s, signer, stop := startServer(t)
	c, err := client.Dial(context.Background(), s.Addr(), mint(t, signer, s.Instance(), "s1", "p1"), client.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.MemberID() == 0 || c.Server() == "" {
		t.Fatalf("member %d server %q", c.MemberID(), c.Server())
	}
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := c.Recv(ctx)
	if err != nil || e.Kind != client.EventReconnect || e.Code != wire.ReconnectShutdown {
		t.Fatalf("event %+v err %v", e, err)
	}
	if err := c.Send([]byte("x")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("send after reconnect: %v", err)
	}
}

// A server that never answers gets JOIN retransmissions that back off (doubling from JoinRetry up
// to 8×) instead of a steady stream: counted, not timed, so load (which only delays resends) cannot
// make it fail.
func TestJoinRetransmitsBackOff(t *testing.T) {
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cfg := client.Default()
	cfg.JoinTimeout = 3 * time.Second
	cfg.JoinRetry = 50 * time.Millisecond
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := wire.NewInstance()
	if err != nil {
		t.Fatal(err)
	}
	tok := mint(t, signer, ins.ID(), "s1", "p1")
	counted := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 2048)
		for {
			if _, _, err := silent.ReadFromUDP(buf); err != nil {
				counted <- n
				return
			}
			n++
		}
	}()
	if _, err := client.Dial(context.Background(), silent.LocalAddr().String(), tok, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	silent.Close()
	n := <-counted
	// A fixed 50 ms interval would send ~60 JOINs in 3 s; backing off to 400 ms sends about 10.
	if n < 2 || n > 14 {
		t.Fatalf("%d JOINs sent in %v with retry %v, want a first send, resends, and backoff (2..14)", n, cfg.JoinTimeout, cfg.JoinRetry)
	}
}
