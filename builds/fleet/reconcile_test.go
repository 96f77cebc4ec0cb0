package fleet

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"gocloud.dev/blob/fileblob"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/internal/kubetest"
)

// TestReconcilerOnRealAPIServer: on a real kube-apiserver with the Agones CRDs, an uploaded build
// gets a Fleet under the kata runtime class and its NetworkPolicy; a second version gets its own;
// deleting a build removes its objects; a restarted reconciler creates no duplicates; objects the
// reconciler does not manage are left alone.
func TestReconcilerOnRealAPIServer(t *testing.T) {
	env := kubetest.Start(t, kubetest.WithAgonesCRDs())
	ctx := t.Context()
	cfg := Default()
	cfg.Namespace = "kumi-builds"
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cfg.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := fileblob.OpenBucket(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	store := builds.NewStore(b, builds.DefaultLimits(), t.TempDir())
	log := slog.New(slog.DiscardHandler)
	fleets := env.Dynamic.Resource(FleetResource).Namespace(cfg.Namespace)
	policies := env.Dynamic.Resource(NetworkPolicyResource).Namespace(cfg.Namespace)
	names := func(l *unstructured.UnstructuredList, err error) map[string]unstructured.Unstructured {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]unstructured.Unstructured{}
		for _, o := range l.Items {
			if _, dup := out[o.GetName()]; dup {
				t.Fatalf("%s listed twice", o.GetName())
			}
			out[o.GetName()] = o
		}
		return out
	}
	// An object of someone else's in the namespace: never touched.
	other := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "agones.dev/v1", "kind": "Fleet",
		"metadata": map[string]any{"name": "hand-made"}, "spec": map[string]any{"replicas": int64(0),
			"template": map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
				"containers": []any{map[string]any{"name": "game", "image": "example.com/game:1"}}}}}}}}}
	if _, err := fleets.Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	upload := func(version string) builds.Manifest {
		t.Helper()
		m, _, err := store.Upload(ctx, "studio-a", bytes.NewReader(duelBuild(t, version)), builds.UploadOptions{Format: builds.FormatTarGz, Version: version})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	r := NewReconciler(log, cfg, store, env.Dynamic)
	sync := func(r *Reconciler) {
		t.Helper()
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}

	v1 := upload("1.0")
	sync(r)
	got := names(fleets.List(ctx, metav1.ListOptions{}))
	f, ok := got[Name(v1)]
	if !ok || len(got) != 2 {
		t.Fatalf("fleets after upload: %v, want %s and hand-made", keys(got), Name(v1))
	}
	rc, _, _ := unstructured.NestedString(f.Object, "spec", "template", "spec", "template", "spec", "runtimeClassName")
	token, _, _ := unstructured.NestedBool(f.Object, "spec", "template", "spec", "template", "spec", "automountServiceAccountToken")
	capacity, _, _ := unstructured.NestedInt64(f.Object, "spec", "template", "spec", "counters", "sessions", "capacity")
	if rc != "kata" || token || capacity != 1 || f.GetAnnotations()["kumi.dev/sha256"] != v1.SHA256 {
		t.Errorf("stored Fleet: runtimeClassName %q, token mounted %v, sessions capacity %d, sha %q", rc, token, capacity, f.GetAnnotations()["kumi.dev/sha256"])
	}
	np := names(policies.List(ctx, metav1.ListOptions{}))
	if _, ok := np[Name(v1)]; !ok || len(np) != 1 {
		t.Fatalf("network policies: %v, want %s", keys(np), Name(v1))
	}

	v2 := upload("2.0")
	sync(r)
	if got := names(fleets.List(ctx, metav1.ListOptions{LabelSelector: managedBy + "=" + Manager})); len(got) != 2 {
		t.Fatalf("fleets after a second version: %v", keys(got))
	}

	// A config change (replicas) reaches the existing Fleets.
	cfg.Replicas = 5
	r = NewReconciler(log, cfg, store, env.Dynamic)
	sync(r)
	f2, err := fleets.Get(ctx, Name(v2), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := unstructured.NestedInt64(f2.Object, "spec", "replicas"); n != 5 {
		t.Errorf("replicas after update: %d, want 5", n)
	}

	if err := store.Delete(ctx, "studio-a", v1.SHA256); err != nil {
		t.Fatal(err)
	}
	sync(r)
	got = names(fleets.List(ctx, metav1.ListOptions{}))
	if _, ok := got[Name(v1)]; ok {
		t.Errorf("Fleet of the deleted build %s still there", Name(v1))
	}
	if _, ok := got["hand-made"]; !ok {
		t.Error("the unmanaged Fleet was deleted")
	}
	if np := names(policies.List(ctx, metav1.ListOptions{})); len(np) != 1 {
		t.Errorf("network policies after delete: %v, want only %s", keys(np), Name(v2))
	}

	// A restarted reconciler (no state but the bucket) converges to the same objects.
	for range 2 {
		sync(NewReconciler(log, cfg, store, env.Dynamic))
	}
	got = names(fleets.List(ctx, metav1.ListOptions{}))
	if len(got) != 2 {
		t.Errorf("fleets after restarts: %v, want %s and hand-made", keys(got), Name(v2))
	}
	if _, ok := got[Name(v2)]; !ok {
		t.Errorf("fleet %s missing after restart", Name(v2))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// duelBuild is a valid Unreal-layout build of project Duel (a minimal x86-64 ELF header as its
// server: validation reads the header only, and nothing runs it here) with a file naming the
// version, so each version has its own bytes.
func duelBuild(t *testing.T, version string) []byte {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "Duel", "Binaries", "Linux")
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
	if err := os.WriteFile(filepath.Join(bin, "DuelServer"), h, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Duel", "version.txt"), []byte(version), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := builds.PackTarGz(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
