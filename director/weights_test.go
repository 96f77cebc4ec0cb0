package director_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/internal/token"
)

// TestDedicatedTrafficFromBuildsAPI: the weights a developer sets through the builds API (HTTP,
// developer JWT) are stored in the builds bucket and reach the director, which places the next
// matches by them; a rollback does too. A weights document the API refuses changes nothing, and
// one the director cannot use (written to the bucket behind the API's back) is refused with a
// clear error while the last good weights stay.
func TestDedicatedTrafficFromBuildsAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bucketDir := t.TempDir()
	dev, err := token.GenerateSigner(token.DefaultIssuer)
	if err != nil {
		t.Fatal(err)
	}
	bcfg := builds.Default()
	bcfg.HTTPAddr, bcfg.BucketURL, bcfg.TmpDir = "127.0.0.1:0", "file://"+bucketDir, t.TempDir()
	bcfg.JWT.Keys = []token.PublicKey{dev.PublicKey()}
	api, err := builds.Start(ctx, slog.New(slog.DiscardHandler), bcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = api.Wait() })
	tok, err := builds.DeveloperToken(dev, "dev@studio", "studio", []string{builds.ScopeWrite}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, ctype string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+api.Addr()+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	for _, v := range []string{"v1", "v2"} {
		if code, body := call("POST", "/v1/builds?version="+v, "application/gzip", duelBuild(t, v)); code != http.StatusCreated {
			t.Fatalf("upload %s: %d %s", v, code, body)
		}
	}
	setWeights := func(w map[string]int) (int, string) {
		data, _ := json.Marshal(map[string]any{"weights": w})
		return call("PUT", "/v1/projects/"+rigGame+"/traffic", "application/json", data)
	}
	if code, body := setWeights(map[string]int{"v1": 100, "v2": 0}); code != http.StatusOK {
		t.Fatalf("set weights: %d %s", code, body)
	}

	// The director reads the same bucket the API writes.
	bucket, err := blob.OpenBucket(ctx, "file://"+bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	r := newDedicatedRig(t, &director.TrafficSource{Bucket: bucket, Tenant: "studio", Interval: 50 * time.Millisecond})
	applied := func(want map[string]int) {
		t.Helper()
		waitFor(t, "weights "+strings.TrimSpace(string(mustJSON(want)))+" applied", 30*time.Second, func() bool {
			got, _ := r.d.DedicatedTraffic(r.prof)
			return maps.Equal(got, want)
		})
	}

	applied(map[string]int{"v1": 100, "v2": 0})
	r.check("v1 at 100% (API)", "v1", r.play(2))

	if code, body := setWeights(map[string]int{"v1": 0, "v2": 100}); code != http.StatusOK {
		t.Fatalf("shift to v2: %d %s", code, body)
	}
	applied(map[string]int{"v1": 0, "v2": 100})
	r.check("v2 at 100% (API)", "v2", r.play(2))

	// The API refuses a split that is not 100 %, naming the sum; nothing changes.
	if code, body := setWeights(map[string]int{"v1": 50, "v2": 40}); code != http.StatusUnprocessableEntity || !strings.Contains(body, "sum to 90") {
		t.Errorf("weights summing to 90: %d %s, want 422 naming the sum", code, body)
	}
	// A document the director cannot use, stored behind the API's back: refused with a clear
	// error; the last good weights stay and keep placing matches.
	for _, bad := range []struct{ doc, want string }{
		{`{"project":"Duel","weights":{"v1":0,"v2":0}}`, "positive weight"},
		{`{"project":"Duel","weights":{"v3":100}}`, `no version "v3"`},
		{`{"project":"Duel","weights":`, "traffic of Duel"},
	} {
		if err := bucket.WriteAll(ctx, "tenants/studio/traffic/Duel.json", []byte(bad.doc), nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the director refusing "+bad.doc, 30*time.Second, func() bool {
			_, err := r.d.DedicatedTraffic(r.prof)
			return err != nil && strings.Contains(err.Error(), bad.want)
		})
		if got, _ := r.d.DedicatedTraffic(r.prof); !maps.Equal(got, map[string]int{"v1": 0, "v2": 100}) {
			t.Errorf("after refusing %s: weights %v, want the last good ones", bad.doc, got)
		}
	}
	r.check("v2 after refused documents", "v2", r.play(1))

	// Rollback through the API: the next match is on v1 again.
	if code, body := setWeights(map[string]int{"v1": 100, "v2": 0}); code != http.StatusOK {
		t.Fatalf("rollback: %d %s", code, body)
	}
	applied(map[string]int{"v1": 100, "v2": 0})
	if _, err := r.d.DedicatedTraffic(r.prof); err != nil {
		t.Errorf("after a good document the refusal is still reported: %v", err)
	}
	r.check("rolled back (API)", "v1", r.play(1))
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// duelBuild is a valid Unreal-layout build of project Duel: a minimal x86-64 ELF header at
// Duel/Binaries/Linux/DuelServer (validation reads the header only; these servers never run here,
// the rig's local fleets stand in for the build's Fleets) plus a file naming the version, so each
// version has its own bytes.
func duelBuild(t *testing.T, version string) []byte {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, rigGame, "Binaries", "Linux")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(h[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(h[18:], uint16(elf.EM_X86_64))
	binary.LittleEndian.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	binary.LittleEndian.PutUint16(h[52:], 64)
	if err := os.WriteFile(filepath.Join(bin, rigGame+"Server"), h, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rigGame, "version.txt"), []byte(version), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := builds.PackTarGz(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
