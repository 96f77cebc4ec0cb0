package openmatch

import (
	"fmt"
	"github.com/kumi-dev/kumi/internal/tlsconfig"
	"time"

	pb "github.com/kumi-dev/kumi/api/openmatch"
)

// Config is every setting of the embedded core. Durations mirror Open Match's config keys of the
// same name (reference §5); where a default differs from upstream the help text says why.
type Config struct {
	FrontendAddr string `flag:"frontend-addr" help:"listen address of openmatch.FrontendService (upstream port 50504); loopback by default: the core has no authentication, so only kumi's frontend should reach it"`
	BackendAddr  string `flag:"backend-addr" help:"listen address of openmatch.BackendService (upstream port 50505); loopback by default (AssignTickets decides who gets which game server)"`
	// TLS secures the three listeners (with a CA file: mTLS, so only holders of a client certificate
	// — kumi's frontend, director and match function — can call the core at all).
	TLS       tlsconfig.Config `prefix:"tls-"`
	Insecure  bool             `flag:"insecure" help:"allow plaintext listeners on non-loopback addresses (the core has no other authentication: anyone who reaches it can create or assign tickets)"`
	QueryAddr string           `flag:"query-addr" help:"listen address of openmatch.QueryService (upstream port 50503); loopback by default (it lists every ticket)"`

	// RegistrationInterval is short because the cycle, not the window, is what makes concurrent
	// FetchMatches calls share an evaluation: a call that arrives while a cycle is evaluating waits
	// and joins the next cycle with every other waiter. Upstream's 250 ms window only adds latency.
	RegistrationInterval       time.Duration `flag:"registration-interval" help:"synchronizer window in which FetchMatches calls join a cycle (upstream helm default 250ms; kumi 2ms keeps FetchMatches fast, waiters still share the next cycle)"`
	ProposalCollectionInterval time.Duration `flag:"proposal-collection-interval" help:"after the registration window, how long MMFs may still stream proposals before they are cancelled"`
	PendingReleaseTimeout      time.Duration `flag:"pending-release-timeout" help:"how long tickets of an accepted match stay pending (hidden from queries) unless assigned or released"`
	AssignedDeleteTimeout      time.Duration `flag:"assigned-delete-timeout" help:"how long an assigned ticket stays readable before it is deleted"`
	QueryPageSize              int           `flag:"query-page-size" help:"tickets, ids or backfills per streamed query response (clamped to 10..10000 like upstream)"`
	QueryPageBytes             int           `flag:"query-page-bytes" help:"also end a query page once it holds this many bytes, so pages stay under clients' 4 MiB receive limit"`
	MaxTicketBytes             int           `flag:"max-ticket-bytes" help:"largest accepted ticket or backfill (serialized size); larger ones are refused with InvalidArgument"`
	MMFRESTTimeout             time.Duration `flag:"mmf-rest-timeout" help:"whole-response timeout when calling a match function over HTTP/JSON (FunctionConfig type REST); upstream hard-codes 3s"`
	EvaluatorAddr              string        `flag:"evaluator-addr" help:"host:port of an openmatch.Evaluator gRPC service; empty runs the built-in default evaluator in process"`
	MetricsAddr                string        `flag:"metrics-addr" help:"serve Prometheus /metrics and /healthz over HTTP here (empty: off)"`
	SweepInterval              time.Duration `flag:"sweep-interval" help:"how often expired assigned tickets are deleted in the background (reads check expiry exactly anyway)"`
	ShutdownGrace              time.Duration `flag:"shutdown-grace" help:"how long a stopping server waits for in-flight RPCs before closing connections"`
	// GCPercent is process-wide, so only Run (the `kumi openmatch` process) applies it, not Start.
	GCPercent int `flag:"gc-percent" help:"garbage-collector target of the kumi openmatch process when GOGC is unset (GC is the largest single cost of a FetchMatches cycle; 400 trades ~4x heap headroom at 391 B/ticket for ~30 % lower latency); 0 keeps Go's default"`

	// MatchFunctions are in-process match functions keyed by "host:port". A FetchMatches call
	// whose FunctionConfig names one of these keys (type GRPC) calls it directly instead of
	// dialling, e.g. {"inprocess:50502": mmf} with FunctionConfig{Host: "inprocess", Port: 50502}.
	// The value is the same type a gRPC match function server implements, so a component's
	// server can be registered here unchanged. Not settable by flag.
	MatchFunctions map[string]pb.MatchFunctionServer
}

// Default returns the defaults: upstream's standard ports and timeouts, except the registration
// window (see Config.RegistrationInterval).
func Default() Config {
	return Config{
		FrontendAddr:               "127.0.0.1:50504",
		BackendAddr:                "127.0.0.1:50505",
		QueryAddr:                  "127.0.0.1:50503",
		RegistrationInterval:       2 * time.Millisecond,
		ProposalCollectionInterval: 10 * time.Second,
		PendingReleaseTimeout:      time.Minute,
		AssignedDeleteTimeout:      10 * time.Minute,
		QueryPageSize:              1000,
		QueryPageBytes:             1 << 20,
		MaxTicketBytes:             64 << 10,
		MMFRESTTimeout:             3 * time.Second,
		SweepInterval:              time.Second,
		ShutdownGrace:              5 * time.Second,
		GCPercent:                  400,
	}
}

func (c *Config) validate() error {
	for _, l := range []struct{ name, addr string }{{"frontend-addr", c.FrontendAddr}, {"backend-addr", c.BackendAddr}, {"query-addr", c.QueryAddr}} {
		if err := tlsconfig.CheckListen("openmatch: "+l.name, l.addr, c.TLS.Enabled(), c.Insecure); err != nil {
			return err
		}
	}
	switch {
	case c.RegistrationInterval <= 0:
		return fmt.Errorf("openmatch: registration-interval must be > 0, got %s", c.RegistrationInterval)
	case c.ProposalCollectionInterval <= 0:
		return fmt.Errorf("openmatch: proposal-collection-interval must be > 0, got %s", c.ProposalCollectionInterval)
	case c.PendingReleaseTimeout <= 0:
		return fmt.Errorf("openmatch: pending-release-timeout must be > 0, got %s", c.PendingReleaseTimeout)
	case c.AssignedDeleteTimeout <= 0:
		return fmt.Errorf("openmatch: assigned-delete-timeout must be > 0, got %s", c.AssignedDeleteTimeout)
	case c.QueryPageBytes < 1024:
		return fmt.Errorf("openmatch: query-page-bytes must be >= 1024, got %d", c.QueryPageBytes)
	case c.MaxTicketBytes < 64:
		return fmt.Errorf("openmatch: max-ticket-bytes must be >= 64, got %d", c.MaxTicketBytes)
	case c.MMFRESTTimeout <= 0:
		return fmt.Errorf("openmatch: mmf-rest-timeout must be > 0, got %s", c.MMFRESTTimeout)
	case c.SweepInterval <= 0:
		return fmt.Errorf("openmatch: sweep-interval must be > 0, got %s", c.SweepInterval)
	}
	c.QueryPageSize = min(max(c.QueryPageSize, 10), 10000)
	return nil
}
