package wrap

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gocloud.dev/blob/fileblob"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/internal/token"
)

// BenchmarkUploadToReady measures, per iteration, from "build uploaded" (Store.Upload returned)
// to "first server Ready" (the wrapper saw the fake Unreal server bind its port under gVisor): the
// fetch, digest check, unpack, sandbox start and server start. The sandbox=none figure (-unsafe-
// no-sandbox) is the baseline of the same steps without gVisor.
func BenchmarkUploadToReady(b *testing.B) {
	requireRunsc(b)
	bin := filepath.Join(b.TempDir(), "fakeue")
	goBuild(b, "fakeue", bin)
	archive := packBuild(b, bin, "Duel")
	signer, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		b.Fatal(err)
	}
	for _, sandbox := range []string{SandboxGVisor, SandboxNone} {
		b.Run(sandbox, func(b *testing.B) {
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				dir := b.TempDir()
				bk, err := fileblob.OpenBucket(dir, nil)
				if err != nil {
					b.Fatal(err)
				}
				m, _, err := builds.NewStore(bk, builds.DefaultLimits(), b.TempDir()).Upload(context.Background(), "studio-a", bytes.NewReader(archive), builds.UploadOptions{Format: builds.FormatTarGz, Version: fmt.Sprint(i)})
				bk.Close()
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				cfg := Default()
				cfg.Bucket, cfg.Tenant, cfg.Build, cfg.Name = "file://"+dir, m.Tenant, m.SHA256, "bench"
				cfg.WorkDir = filepath.Join(b.TempDir(), "w")
				cfg.ServerLog = filepath.Join(b.TempDir(), "log")
				cfg.ListenAddr = "127.0.0.1:0"
				cfg.Sandbox, cfg.UnsafeNoSandbox = sandbox, sandbox == SandboxNone
				cfg.AdmitAddr = "127.0.0.1:0"
				cfg.JWT.Keys = []token.PublicKey{signer.PublicKey()}
				ctx, cancel := context.WithCancel(context.Background())
				w, err := Start(ctx, slog.New(slog.DiscardHandler), cfg)
				if err != nil {
					b.Fatal(err)
				}
				select {
				case <-w.Ready():
				case <-w.Done():
					logData, _ := os.ReadFile(cfg.ServerLog)
					b.Fatalf("%s: wrapper ended before ready: %v; server log:\n%s", sandbox, w.Wait(), logData)
				case <-time.After(2 * time.Minute):
					logData, _ := os.ReadFile(cfg.ServerLog)
					b.Fatalf("%s: not ready; server log:\n%s", sandbox, logData)
				}
				total += time.Since(start)
				cancel()
				_ = w.Wait()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-ready")
		})
	}
}
