package main

import (
	"os"
	"testing"

	"github.com/kumi-dev/kumi/local"
)

// testLocalConfig is `kumi local` as the tests run it: every listener on a free 127.0.0.1 port,
// this test binary as the game servers' kumi, keys in a test directory, no demo crowd.
func testLocalConfig(t *testing.T) local.Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := local.Default()
	cfg.Players = 0
	cfg.OMFrontendAddr, cfg.OMBackendAddr, cfg.OMQueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.MMFAddr, cfg.FrontendAddr, cfg.FrontendHTTP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ControlAddr, cfg.AdminAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ConsoleAddr = "127.0.0.1:0"
	cfg.KeyDir = t.TempDir()
	cfg.GameServerCommand = []string{exe, "gameserver"}
	cfg.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=warn", "GORACE=atexit_sleep_ms=0"}
	return cfg
}
