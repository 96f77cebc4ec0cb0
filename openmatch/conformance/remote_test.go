package conformance

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/testport"
	"github.com/kumi-dev/kumi/openmatch"
)

// remoteModeTests are the tests that talk to the suite's evaluator and match function (the ones a
// per-test evaluator listener broke against a real Open Match, which keeps its connection).
var remoteModeTests = []string{
	"TestHappyPath", "TestMatchFunctionMatchCollision", "TestSynchronizerMatchCollision",
	"TestEvaluatorReturnInvalidID", "TestEvaluatorReturnDuplicateMatchID", "TestMatchWithNoTickets",
	"TestEvaluatorError", "TestMMFError", "TestNoMatches", "TestDefaultEvaluatorScore", "TestHTTPMMF",
}

// TestRemoteModeKeepsOneEvaluator runs the evaluator tests the way the suite runs against a real
// Open Match: one long-lived core, dialled by address, whose evaluator connection outlives every
// test. The tests run in a child process of this test binary with the KUMI_OM_* variables set, so
// the harness takes its remote path (one suite-wide evaluator and match-function listener, each
// call routed to the test running then); a listener per test would fail them with "connection
// refused" from the second test on.
func TestRemoteModeKeepsOneEvaluator(t *testing.T) {
	if os.Getenv(EnvFrontend) != "" {
		t.Log("already running against a remote core")
		return
	}
	evalAddr := freeAddr(t)
	tm, err := timingFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg := openmatch.Default()
	cfg.FrontendAddr, cfg.BackendAddr, cfg.QueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.RegistrationInterval, cfg.ProposalCollectionInterval = tm.Registration, tm.ProposalCollection
	cfg.PendingReleaseTimeout, cfg.AssignedDeleteTimeout, cfg.QueryPageSize = tm.PendingRelease, tm.AssignedDelete, tm.PageSize
	cfg.EvaluatorAddr = evalAddr
	cfg.SweepInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	core, err := openmatch.Start(ctx, slog.New(slog.DiscardHandler), cfg, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = core.Wait() })

	ctx, stop := context.WithTimeout(context.Background(), 10*time.Minute)
	defer stop()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^("+strings.Join(remoteModeTests, "|")+")$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(),
		EnvFrontend+"="+core.FrontendAddr(), EnvBackend+"="+core.BackendAddr(), EnvQuery+"="+core.QueryAddr(),
		EnvEvaluatorListen+"="+evalAddr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("suite against a long-lived core: %v\n%s", err, out)
	}
	for _, name := range remoteModeTests {
		if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).Match(out) {
			t.Errorf("%s did not pass in the child run:\n%s", name, out)
		}
	}
}

// freeAddr is a 127.0.0.1 port free now, for a listener that must be named before it exists (the
// core is configured with the evaluator's address before the child process listens on it).
func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testport.Free(t)))
}
