package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "gocloud.dev/blob/fileblob" // the in-process builds API stores builds in a directory
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	clientpb "github.com/kumi-dev/kumi/api/client"
	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/wrap"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/matchfunction"
)

// Dedicated is `kumi local --build`: upload a dedicated-server build (an Unreal Linux server
// packed as .tar.gz or .zip) to an in-process builds API and run a small crowd against it.
type Dedicated struct {
	Build           string `flag:"build" help:"dedicated-server build archive (.tar.gz or .zip) to upload and serve matches on; empty runs the voice/duel demo"`
	MatchPlayers    int    `flag:"build-match-players" help:"players per match on the build's servers (one match per server)"`
	Matches         int    `flag:"build-matches" help:"matches the build crowd plays"`
	Warm            int    `flag:"build-warm" help:"Ready build servers the director keeps allocated in advance"`
	UnsafeNoSandbox bool   `flag:"unsafe-no-sandbox" help:"DEV ONLY: run the uploaded build as a plain process instead of under gVisor (runsc, needs root)"`
	Runsc           string `flag:"runsc" help:"gVisor runsc binary the build runs under"`

	// Set by RunBuild before Start: the game's match profile. Its tickets' game attribute needs
	// no entry of its own: frontend.DefaultAttributes allows game:string.
	profiles []matchfunction.Profile
}

// DefaultDedicated returns the defaults: 2-player matches, 3 matches, 2 warm servers, gVisor.
func DefaultDedicated() Dedicated {
	return Dedicated{MatchPlayers: 2, Matches: 3, Warm: 2, Runsc: "runsc"}
}

// BuildResult is what a build run measured.
type BuildResult struct {
	Manifest builds.Manifest
	// Upload is how long the upload (validated and stored) took.
	Upload time.Duration
	// FirstReady is the time from "build uploaded" to the first warm server allocated (Ready,
	// bound and reported by its wrapper).
	FirstReady time.Duration
	// FirstMatch is the time from "build uploaded" to the first player admitted by a build server.
	FirstMatch time.Duration
	// Admitted counts players the build's servers admitted, of Players.
	Admitted, Players int
	Failures          []string
}

// Print writes the result.
func (r BuildResult) Print(w io.Writer) {
	fmt.Fprintf(w, "build %s %s (sha256 %.12s, %d bytes) uploaded in %v\n", r.Manifest.Project, r.Manifest.Version, r.Manifest.SHA256, r.Manifest.Size, r.Upload.Round(time.Millisecond))
	fmt.Fprintf(w, "  uploaded → first server Ready   %v\n", r.FirstReady.Round(time.Millisecond))
	fmt.Fprintf(w, "  uploaded → first match served   %v\n", r.FirstMatch.Round(time.Millisecond))
	fmt.Fprintf(w, "  players admitted by the build   %d of %d\n", r.Admitted, r.Players)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  failed: %s\n", f)
	}
}

// runBuild is Run with a build: it serves the build's matches and runs the build crowd.
func runBuild(ctx context.Context, log *slog.Logger, cfg Config, out io.Writer) error {
	res, err := RunBuild(ctx, log, cfg, func(s *Stack) {
		s.PrintEndpoints(out)
		fmt.Fprintf(out, "  logs              %s\n", cfg.LogFile)
	})
	res.Print(out)
	if err != nil {
		return err
	}
	if cfg.ServeOnly {
		fmt.Fprintln(out, "serving; Ctrl-C stops everything")
		<-ctx.Done()
	}
	return nil
}

// RunBuild starts the stack with the build's game profile, uploads cfg.Dedicated.Build through a
// real builds API (HTTP, developer token), serves its matches on a local fleet of `kumi gameserver
// wrap` processes (under gVisor unless UnsafeNoSandbox), and plays Matches matches: each player
// files a ticket with game=<project>, gets an assignment and says `HELLO ?token=<server token>`
// to the server, which the wrapper must admit. up is called once the stack is up.
func RunBuild(ctx context.Context, log *slog.Logger, cfg Config, up func(*Stack)) (BuildResult, error) {
	var res BuildResult
	dc := cfg.Dedicated
	if dc.MatchPlayers < 1 || dc.Matches < 1 || dc.Warm < 1 {
		return res, fmt.Errorf("local: build-match-players, build-matches and build-warm must be >= 1")
	}
	if !dc.UnsafeNoSandbox {
		if _, err := os.Stat("/proc/self/ns/net"); err != nil || os.Geteuid() != 0 {
			return res, errors.New("local: running an uploaded build under gVisor needs root (network namespaces, runsc); run as root or pass -unsafe-no-sandbox (DEV ONLY: the build then runs as a plain process)")
		}
	}
	archive, err := os.Open(dc.Build)
	if err != nil {
		return res, fmt.Errorf("local: build: %w", err)
	}
	defer archive.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The builds API, in process, as a developer meets it: HTTP with a developer token.
	devSigner, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		return res, err
	}
	bucketDir := filepath.Join(cfg.KeyDir, "builds")
	bcfg := builds.Default()
	bcfg.HTTPAddr = "127.0.0.1:0"
	bcfg.BucketURL = "file://" + bucketDir + "?create_dir=1"
	bcfg.JWT.Keys = []token.PublicKey{devSigner.PublicKey()}
	api, err := builds.Start(ctx, log.With("component", "builds"), bcfg)
	if err != nil {
		return res, fmt.Errorf("local: builds API: %w", err)
	}
	defer func() { cancel(); _ = api.Wait() }()
	devTok, err := builds.DeveloperToken(devSigner, "local-developer", "local", []string{"builds:write"}, time.Hour)
	if err != nil {
		return res, err
	}
	start := time.Now()
	m, err := upload(ctx, "http://"+api.Addr(), devTok, archive, dc.Build)
	if err != nil {
		return res, err
	}
	uploaded := time.Now()
	res.Manifest, res.Upload = m, uploaded.Sub(start)
	log.Info("build uploaded", "project", m.Project, "version", m.Version, "sha256", m.SHA256, "took", res.Upload)

	prof := matchfunction.GameProfile(m.Project, dc.MatchPlayers)
	cfg.Dedicated.profiles = []matchfunction.Profile{prof}
	// The voice/duel demo fleet still starts (the director needs its pool) but stays small.
	cfg.Servers, cfg.MaxServers = 1, 2
	s, err := Start(ctx, log, cfg)
	if err != nil {
		return res, err
	}
	defer func() { cancel(); _ = s.Wait() }()
	if up != nil {
		up(s)
	}

	fleet, err := startBuildFleet(ctx, log, cfg, s, m, bucketDir)
	if err != nil {
		return res, err
	}
	defer func() { cancel(); _ = fleet.Wait() }()
	if err := s.Director.ServeDedicated(ctx, director.DedicatedGame{Game: m.Project, Profile: prof.Name, Warm: dc.Warm,
		Versions: []director.DedicatedVersion{{Version: m.Version, Weight: 100, Backend: fleet}}}); err != nil {
		return res, err
	}
	if err := waitFor(ctx, 3*time.Minute, func() bool { return s.Director.WarmDedicated(prof.Name, m.Version) > 0 }); err != nil {
		return res, fmt.Errorf("local: no build server became Ready (see the log: the wrapper's and the server's output): %w", err)
	}
	res.FirstReady = time.Since(uploaded)

	res.Players = dc.Matches * dc.MatchPlayers
	first, ok, fails := playBuild(ctx, s, m.Project, res.Players)
	res.Admitted, res.Failures = ok, fails
	if !first.IsZero() {
		res.FirstMatch = first.Sub(uploaded)
	}
	if ok != res.Players {
		return res, fmt.Errorf("local: %d of %d build players were not admitted", res.Players-ok, res.Players)
	}
	return res, nil
}

// upload POSTs the archive to the builds API.
func upload(ctx context.Context, base, tok string, body io.Reader, name string) (builds.Manifest, error) {
	var m builds.Manifest
	format := builds.FormatTarGz
	if strings.HasSuffix(strings.ToLower(name), ".zip") {
		format = builds.FormatZip
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/builds?format="+format+"&version=local-1", body)
	if err != nil {
		return m, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("local: upload build: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return m, fmt.Errorf("local: build %s refused: HTTP %d: %s", name, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("local: builds API answer: %w", err)
	}
	return m, nil
}

// startBuildFleet starts a local fleet of `kumi gameserver wrap` processes running the build, one
// match per server. Each wrapper fetches the build from the bucket by sha256 and admits only
// server tokens of the director's key.
func startBuildFleet(ctx context.Context, log *slog.Logger, cfg Config, s *Stack, m builds.Manifest, bucketDir string) (*localfleet.Fleet, error) {
	cmd := cfg.GameServerCommand
	if len(cmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd = []string{exe, "gameserver"}
	}
	cmd = append(append([]string(nil), cmd...), "wrap",
		"-bucket=file://"+bucketDir,
		"-tenant="+m.Tenant,
		"-build="+m.SHA256,
		"-listen-addr=127.0.0.1:0",
		"-jwt-public-keys="+s.ServerKID+"="+filepath.Join(s.KeyDir, "server.pub.pem"),
		"-grace=2s",
		"-ready-timeout=2m",
	)
	if cfg.Dedicated.UnsafeNoSandbox {
		// Without a namespace of their own the wrappers share the host's loopback: each admit
		// endpoint takes a free port (the server learns it from $KUMI_ADMIT_URL).
		cmd = append(cmd, "-sandbox="+wrap.SandboxNone, "-unsafe-no-sandbox", "-admit-addr=127.0.0.1:0")
	} else {
		cmd = append(cmd, "-sandbox="+wrap.SandboxGVisor, "-runsc="+cfg.Dedicated.Runsc)
	}
	fc := localfleet.Default()
	fc.Name = "build-" + strings.ToLower(m.Project)
	fc.BufferSize = cfg.Dedicated.Warm
	fc.MaxReplicas = cfg.Dedicated.Warm + cfg.Dedicated.Matches + 1
	fc.SessionCapacity = 1
	fc.Command = cmd
	fc.Env = cfg.GameServerEnv
	fc.Output = cfg.GameServerOutput
	f, err := localfleet.Start(ctx, log.With("component", "buildfleet"), fc, nil)
	if err != nil {
		return nil, fmt.Errorf("local: build fleet: %w", err)
	}
	return f, nil
}

// playBuild runs n players against the game: ticket → assignment → HELLO ?token= → WELCOME. It
// returns when the first player was admitted, how many were, and why the others failed.
func playBuild(ctx context.Context, s *Stack, game string, n int) (first time.Time, ok int, fails []string) {
	conn, err := grpc.NewClient(s.Frontend.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return first, 0, []string{err.Error()}
	}
	defer conn.Close()
	fe := clientpb.NewFrontendClient(conn)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			player := fmt.Sprintf("build-player-%d", i)
			err := playOne(ctx, s, fe, player, game)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fails = append(fails, player+": "+err.Error())
				return
			}
			ok++
			if now := time.Now(); first.IsZero() || now.Before(first) {
				first = now
			}
		})
	}
	wg.Wait()
	return first, ok, fails
}

func playOne(ctx context.Context, s *Stack, fe clientpb.FrontendClient, player, game string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	raw, err := s.PlayerSigner.PlayerToken(player, time.Hour)
	if err != nil {
		return err
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+raw)
	t, err := fe.CreateTicket(ctx, &clientpb.CreateTicketRequest{Attributes: map[string]*structpb.Value{
		matchfunction.GameAttribute: structpb.NewStringValue(game)}})
	if err != nil {
		return fmt.Errorf("create ticket: %w", err)
	}
	var as *clientpb.Assignment
	for as == nil {
		stream, err := fe.WatchAssignment(ctx, &clientpb.WatchAssignmentRequest{TicketId: t.GetId()})
		if err != nil {
			return fmt.Errorf("watch assignment: %w", err)
		}
		for {
			tk, err := stream.Recv()
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("no assignment: %w", ctx.Err())
				}
				break
			}
			if tk.GetState() == clientpb.Ticket_ASSIGNED {
				as = tk.GetAssignment()
				break
			}
		}
	}
	c, err := net.Dial("udp", as.GetAddress())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	// UDP may drop: say HELLO until answered (a repeated HELLO with a used token is refused as a
	// replay, so only the first answer counts).
	for attempt := 0; ; attempt++ {
		if _, err := c.Write([]byte("HELLO ?token=" + as.GetServerToken())); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			if ctx.Err() != nil || attempt >= 20 {
				return fmt.Errorf("no answer from %s: %w", as.GetAddress(), err)
			}
			continue
		}
		got := string(buf[:n])
		if want := "WELCOME " + player + " "; !strings.HasPrefix(got, want) {
			return fmt.Errorf("server %s answered %q, want %q<session>", as.GetAddress(), got, want)
		}
		return nil
	}
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
