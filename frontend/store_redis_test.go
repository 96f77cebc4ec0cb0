package frontend

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/internal/testport"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// startRedis runs a real redis-server on 127.0.0.1 on a free port with its files in a temporary
// directory, stopped at the end of the test. scripts/tools.d/30-redis.sh installs it.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: install Debian's redis-server package (scripts/tools.d/30-redis.sh does: apt-get install redis-server)")
	}
	port := strconv.Itoa(testport.Free(t)) // redis-server binds it itself
	dir := t.TempDir()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", dir, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + port
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		if err := rdb.Ping(ctx).Err(); err == nil {
			return addr
		} else if ctx.Err() != nil {
			t.Fatalf("redis-server on %s did not answer: %v", addr, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func redisConfig(addr string) StoreConfig {
	c := DefaultStoreConfig()
	c.RedisAddr = addr
	return c
}

// TestStores runs the same contract against the memory store and a Redis store.
func TestStores(t *testing.T) {
	addr := startRedis(t)
	for _, tc := range []struct {
		name string
		cfg  StoreConfig
	}{{"memory", DefaultStoreConfig()}, {"redis", redisConfig(addr)}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			st, err := newStore(ctx, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if l, err := st.Acquire(ctx, "p1"); err != nil || l != (Live{}) {
				t.Fatalf("fresh player: %+v, %v", l, err)
			}
			if err := st.Release(ctx, "p1", Live{"t1", "k1"}, time.Hour); err != nil {
				t.Fatal(err)
			}
			if id, err := st.Current(ctx, "p1"); err != nil || id != "t1" {
				t.Fatalf("current %q, %v; want t1", id, err)
			}
			if l, err := st.Acquire(ctx, "p1"); err != nil || l != (Live{"t1", "k1"}) {
				t.Fatalf("acquire after save: %+v, %v", l, err)
			}
			if err := st.Release(ctx, "p1", Live{}, time.Hour); err != nil {
				t.Fatal(err)
			}
			if id, _ := st.Current(ctx, "p1"); id != "" {
				t.Fatalf("cleared player still has %q", id)
			}
			// A live ticket is kept no longer than its ttl.
			if _, err := st.Acquire(ctx, "p2"); err != nil {
				t.Fatal(err)
			}
			if err := st.Release(ctx, "p2", Live{"t2", "k"}, time.Millisecond); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				id, _ := st.Current(ctx, "p2")
				if id == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("a live ticket outlived its ttl")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestRedisStoreHoldIsExclusive: while one replica holds a player, another replica's Acquire waits,
// and then sees what the first saved.
func TestRedisStoreHoldIsExclusive(t *testing.T) {
	addr := startRedis(t)
	ctx := t.Context()
	a, err := newRedisStore(ctx, redisConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := newRedisStore(ctx, redisConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Acquire(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	got := make(chan Live, 1)
	go func() {
		l, err := b.Acquire(ctx, "p")
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	// b must not get the hold while a has it: a short-deadline Acquire from a third store fails.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	c, err := newRedisStore(ctx, redisConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Acquire(short, "p"); err == nil {
		t.Fatal("a second hold was granted while the first was held")
	}
	cancel()
	select {
	case l := <-got:
		t.Fatalf("b acquired %+v while a held the player", l)
	default:
	}
	if err := a.Release(ctx, "p", Live{"t1", "k"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l != (Live{"t1", "k"}) {
		t.Fatalf("b saw %+v, want a's saved ticket", l)
	}
	if err := b.Release(ctx, "p", Live{"t1", "k"}, time.Hour); err != nil {
		t.Fatal(err)
	}
}

// TestRedisStoreUnreachable: a frontend cannot start on a Redis it cannot reach, and says which.
func TestRedisStoreUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := newRedisStore(t.Context(), redisConfig(addr)); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("want an error naming %s, got %v", addr, err)
	}
}

// TestOneLiveTicketAcrossReplicas: two frontend replicas on one Open Match core share a Redis
// store; a player who reaches both still holds one live ticket.
func TestOneLiveTicketAcrossReplicas(t *testing.T) {
	addr := startRedis(t)
	base := newEnv(t, func(c *Config) { c.Store = redisConfig(addr) })
	cfg := base.cfg
	fe2, _ := startFrontend(t, base.core, cfg)
	api2 := client.NewFrontendClient(dial(t, fe2.GRPCAddr()))
	attrs := func(group string) map[string]*structpb.Value {
		return map[string]*structpb.Value{"mode": structpb.NewStringValue("voice"), "chat_group": structpb.NewStringValue(group)}
	}

	t1, err := base.api.CreateTicket(base.as("alice"), &client.CreateTicketRequest{Attributes: attrs("g1")})
	if err != nil {
		t.Fatal(err)
	}
	// Same attributes on the other replica: the same live ticket (an idempotent retry).
	t2, err := api2.CreateTicket(base.as("alice"), &client.CreateTicketRequest{Attributes: attrs("g1")})
	if err != nil {
		t.Fatal(err)
	}
	if t2.GetId() != t1.GetId() {
		t.Fatalf("replica 2 filed a second ticket %s; want alice's live ticket %s", t2.GetId(), t1.GetId())
	}
	// Other attributes on the other replica: refused.
	_, err = api2.CreateTicket(base.as("alice"), &client.CreateTicketRequest{Attributes: attrs("g2")})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("other attributes on replica 2: %v, want AlreadyExists", err)
	}
	// "current" resolves on either replica.
	cur, err := api2.GetTicket(base.as("alice"), &client.GetTicketRequest{TicketId: "current"})
	if err != nil || cur.GetId() != t1.GetId() {
		t.Fatalf("current on replica 2: %v, %v", cur.GetId(), err)
	}
	// Cancelled on replica 2, so replica 1 files a new one.
	if _, err := api2.CancelTicket(base.as("alice"), &client.CancelTicketRequest{TicketId: t1.GetId()}); err != nil {
		t.Fatal(err)
	}
	t3, err := base.api.CreateTicket(base.as("alice"), &client.CreateTicketRequest{Attributes: attrs("g2")})
	if err != nil || t3.GetId() == t1.GetId() {
		t.Fatalf("after cancel: %v, %v", t3.GetId(), err)
	}

	// Many players racing both replicas at once: exactly one ticket each in Open Match.
	const n = 20
	var wg sync.WaitGroup
	ids := make([][2]string, n)
	for i := range n {
		for r, api := range []client.FrontendClient{base.api, api2} {
			wg.Go(func() {
				tk, err := api.CreateTicket(base.as("racer-"+strconv.Itoa(i)), &client.CreateTicketRequest{Attributes: attrs("race")})
				if err != nil {
					t.Error(err)
					return
				}
				ids[i][r] = tk.GetId()
			})
		}
	}
	wg.Wait()
	for i, p := range ids {
		if p[0] == "" || p[0] != p[1] {
			t.Errorf("racer-%d got tickets %q and %q; want one", i, p[0], p[1])
		}
	}
}
