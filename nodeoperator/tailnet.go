package nodeoperator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
)

// PeerState is what the tailnet says about one on-prem node.
type PeerState struct {
	Up     bool
	Reason string // why it is down, or how it was seen up
}

// Peers answers, for a set of tailnet hostnames (the on-prem Nodes' names), whether each is on
// the tailnet and answering.
type Peers interface {
	Check(ctx context.Context, hostnames []string) map[string]PeerState
}

// ProductionEnv sets the tailscale environment knobs a server binary needs before any tsnet node
// starts: no log upload to Tailscale's servers, no UPnP/NAT-PMP/PCP port mapping on the host
// network. They are read when tailscale packages initialise, hence process-wide.
func ProductionEnv() {
	envknob.Setenv("TS_NO_LOGS_NO_SUPPORT", "true")
	envknob.Setenv("TS_DISABLE_PORTMAPPER", "true")
}

// Tailnet is the operator's tsnet node and its peer checks.
type Tailnet struct {
	srv     *tsnet.Server
	lc      *local.Client
	port    int
	timeout time.Duration
	log     *slog.Logger
}

// StartTailnet joins the tailnet as the operator's own node and waits until it is up. The auth key
// comes from cfg.AuthKeyFile (only needed on first login; the state directory keeps the identity).
func StartTailnet(ctx context.Context, cfg TailnetConfig, log *slog.Logger) (*Tailnet, error) {
	ProductionEnv()
	var key string
	if cfg.AuthKeyFile != "" {
		b, err := os.ReadFile(cfg.AuthKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tailnet: -tailnet-auth-key-file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("tailnet: -tailnet-state-dir: %w", err)
		}
	}
	srv := &tsnet.Server{
		Dir:        cfg.StateDir,
		Hostname:   cfg.Hostname,
		AuthKey:    key,
		ControlURL: cfg.ControlURL,
		Ephemeral:  cfg.Ephemeral,
		Logf:       func(string, ...any) {}, // tsnet's own chatter; failures surface through Up and probes
		UserLogf:   func(f string, a ...any) { log.Info("tsnet: " + fmt.Sprintf(f, a...)) },
	}
	t, err := NewTailnet(ctx, srv, cfg, log)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return t, nil
}

// NewTailnet brings srv up (if not yet) and wraps it; tests pass a tsnet.Server on a loopback tailnet.
func NewTailnet(ctx context.Context, srv *tsnet.Server, cfg TailnetConfig, log *slog.Logger) (*Tailnet, error) {
	if _, err := srv.Up(ctx); err != nil {
		return nil, fmt.Errorf("tailnet: join: %w", err)
	}
	lc, err := srv.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("tailnet: %w", err)
	}
	return &Tailnet{srv: srv, lc: lc, port: cfg.ProbePort, timeout: cfg.Timeout, log: log}, nil
}

// Close leaves the tailnet.
func (t *Tailnet) Close() error { return t.srv.Close() }

// Check reads the peer list once and probes every present peer in parallel: over the tailnet a
// TCP dial to the probe port, or a disco ping when no port is set. A peer is up only if it is in
// the netmap, not reported offline by control, and answers the probe.
func (t *Tailnet) Check(ctx context.Context, hostnames []string) map[string]PeerState {
	out := make(map[string]PeerState, len(hostnames))
	st, err := t.lc.Status(ctx)
	if err != nil {
		for _, h := range hostnames {
			out[h] = PeerState{Up: false, Reason: "tailnet status: " + err.Error()}
		}
		return out
	}
	// Peers are matched by hostname and by the first label of their MagicDNS name. Control's
	// Online bit is not trusted on its own (it lags, and some control servers never set it): the
	// probe decides.
	byName := map[string]netip.Addr{}
	for _, p := range st.Peer {
		if len(p.TailscaleIPs) == 0 {
			continue
		}
		if dns, _, _ := strings.Cut(p.DNSName, "."); dns != "" {
			byName[strings.ToLower(dns)] = p.TailscaleIPs[0]
		}
		byName[strings.ToLower(p.HostName)] = p.TailscaleIPs[0]
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hostnames {
		ip, ok := byName[strings.ToLower(h)]
		if !ok {
			out[h] = PeerState{Reason: "not in the tailnet"}
			continue
		}
		wg.Go(func() {
			s := t.probe(ctx, ip)
			mu.Lock()
			out[h] = s
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (t *Tailnet) probe(ctx context.Context, ip netip.Addr) PeerState {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if t.port > 0 {
		c, err := t.srv.Dial(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(t.port)))
		if err != nil {
			return PeerState{Reason: "probe port: " + err.Error()}
		}
		c.Close()
		return PeerState{Up: true, Reason: "probe port answered"}
	}
	res, err := t.lc.Ping(ctx, ip, tailcfg.PingDisco)
	if err != nil {
		return PeerState{Reason: "ping: " + err.Error()}
	}
	if res.Err != "" {
		return PeerState{Reason: "ping: " + res.Err}
	}
	return PeerState{Up: true, Reason: "ping answered"}
}
