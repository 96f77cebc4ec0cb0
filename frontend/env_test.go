package frontend

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/api/client"
	pb "github.com/kumi-dev/kumi/api/openmatch"
	"github.com/kumi-dev/kumi/internal/omext"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/openmatch"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// env is a real embedded Open Match core plus a frontend in front of it, both on 127.0.0.1.
type env struct {
	t       testing.TB
	core    *openmatch.Server
	fe      *Server
	cfg     Config
	signer  *token.Signer
	claims  map[string]map[string]any // extra claims of each player's token (nil: none)
	om      pb.FrontendServiceClient
	backend pb.BackendServiceClient
	api     client.FrontendClient
	base    string // http://127.0.0.1:port
	hc      *http.Client
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfig(signer *token.Signer) Config {
	cfg := Default()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.JWT.Keys = []token.PublicKey{signer.PublicKey()}
	cfg.ShutdownGrace = time.Second
	cfg.PlayerRate, cfg.PlayerBurst = 1000, 1000
	// The flow tests choose every attribute freely; claim-sourced attributes (the default) have
	// their own tests in claims_test.go.
	attrs, err := ParseAttributes(strings.NewReplacer("@groups", "", "@party", "", "@skill", "").Replace(DefaultAttributes))
	if err != nil {
		panic(err)
	}
	cfg.Attributes = attrs
	return cfg
}

// startCore starts the embedded Open Match core, stopped at the end of the test.
func startCore(t testing.TB) *openmatch.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ocfg := openmatch.Default()
	ocfg.FrontendAddr, ocfg.BackendAddr, ocfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	core, err := openmatch.Start(ctx, testLog(t), ocfg, prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); core.Wait() })
	return core
}

// startFrontend starts a frontend on core with cfg, stopped at the end of the test (or by the
// returned stop).
func startFrontend(t testing.TB, core *openmatch.Server, cfg Config) (*Server, func()) {
	t.Helper()
	return startFrontendLog(t, core, cfg, testLog(t))
}

// startFrontendLog is startFrontend logging to log.
func startFrontendLog(t testing.TB, core *openmatch.Server, cfg Config, log *slog.Logger) (*Server, func()) {
	t.Helper()
	cfg.OpenMatchAddr = core.FrontendAddr()
	ctx, cancel := context.WithCancel(context.Background())
	fe, err := Start(ctx, log, cfg, prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		if err := fe.Wait(); err != nil {
			t.Errorf("frontend stopped with %v", err)
		}
	}
	t.Cleanup(stop)
	return fe, stop
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	return newEnvLog(t, mutate, testLog(t))
}

// newEnvLog is newEnv with the frontend logging to log.
func newEnvLog(t testing.TB, mutate func(*Config), log *slog.Logger) *env {
	t.Helper()
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	core := startCore(t)
	cfg := testConfig(signer)
	if mutate != nil {
		mutate(&cfg)
	}
	fe, _ := startFrontendLog(t, core, cfg, log)
	hc := &http.Client{Timeout: 30 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	return &env{
		t: t, core: core, fe: fe, cfg: cfg, signer: signer,
		om:      pb.NewFrontendServiceClient(dial(t, core.FrontendAddr())),
		backend: pb.NewBackendServiceClient(dial(t, core.BackendAddr())),
		api:     client.NewFrontendClient(dial(t, fe.GRPCAddr())),
		base:    "http://" + fe.HTTPAddr(),
		hc:      hc,
	}
}

func (e *env) token(player string) string {
	e.t.Helper()
	tok, err := e.signer.PlayerToken(player, time.Hour, e.claims[player])
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// as is a context carrying player's bearer token for gRPC calls.
func (e *env) as(player string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.token(player))
}

// do sends an HTTP request with player's token ("" sends none) and returns status, headers, body.
func (e *env) do(method, path, player, body string) (int, http.Header, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if player != "" {
		req.Header.Set("Authorization", "Bearer "+e.token(player))
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func (e *env) createHTTP(player, body string) *client.Ticket {
	e.t.Helper()
	code, _, b := e.do("POST", "/v1/tickets", player, body)
	if code != http.StatusCreated && code != http.StatusOK {
		e.t.Fatalf("create: %d %s", code, b)
	}
	return decodeTicket(e.t, b)
}

func decodeTicket(t testing.TB, b []byte) *client.Ticket {
	t.Helper()
	var ct client.Ticket
	if err := protojson.Unmarshal(b, &ct); err != nil {
		t.Fatalf("decode ticket %s: %v", b, err)
	}
	return &ct
}

type apiErr struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func decodeErr(t testing.TB, b []byte) apiErr {
	t.Helper()
	var e apiErr
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("decode error %s: %v", b, err)
	}
	return e
}

// assignment is what the director writes: connection plus the omext keys.
func assignment(addr, session, tok string, exp time.Time) *pb.Assignment {
	ext := omext.PutString(nil, omext.Session, session)
	omext.PutString(ext, omext.ServerToken, tok)
	omext.PutTime(ext, omext.TokenExpiry, exp)
	return &pb.Assignment{Connection: addr, Extensions: ext}
}

func (e *env) assign(a *pb.Assignment, ids ...string) {
	e.t.Helper()
	resp, err := e.backend.AssignTickets(context.Background(), &pb.AssignTicketsRequest{
		Assignments: []*pb.AssignmentGroup{{TicketIds: ids, Assignment: a}}})
	if err != nil || len(resp.GetFailures()) > 0 {
		e.t.Fatalf("assign %v: %v %v", ids, resp, err)
	}
}

// sse reads server-sent events from a response body.
type sse struct{ r *bufio.Reader }

// next returns the next event's name and data; comments (heartbeats) are skipped.
func (s *sse) next() (event, data string, err error) {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func attrs(kv ...any) map[string]*structpb.Value {
	m := map[string]*structpb.Value{}
	for i := 0; i < len(kv); i += 2 {
		v, err := structpb.NewValue(kv[i+1])
		if err != nil {
			panic(err)
		}
		m[kv[i].(string)] = v
	}
	return m
}
