package builds

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"gocloud.dev/blob/fileblob"
)

var (
	benchOnce sync.Once
	benchData []byte
)

// benchArchive is a 64 MiB-ish build compressing about 2:1 like game content: 48 files mixing
// random and repetitive bytes, plus the server binary.
func benchArchive(b *testing.B) []byte {
	benchOnce.Do(func() {
		ents := []ent{server("Game")}
		chunk := make([]byte, 1<<20)
		for i := range 48 {
			body := make([]byte, 0, 2<<20)
			_, _ = rand.Read(chunk)
			body = append(body, chunk...)
			body = append(body, bytes.Repeat([]byte{byte(i)}, 1<<20)...)
			ents = append(ents, file("Game/Content/Paks/p"+string(rune('a'+i%26))+string(rune('a'+i/26))+".pak", body))
		}
		benchData = tarGz(b, ents...)
	})
	return benchData
}

// BenchmarkUpload: validated and stored (Store.Upload into a file bucket) vs BenchmarkPlainCopy of
// the same bytes into the same kind of bucket; compare their MB/s.
func BenchmarkUpload(b *testing.B) {
	data := benchArchive(b)
	lim := DefaultLimits()
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		bk, err := fileblob.OpenBucket(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		st := NewStore(bk, lim, b.TempDir())
		if _, _, err := st.Upload(context.Background(), "studio-a", bytes.NewReader(data), UploadOptions{Format: FormatTarGz, Version: "1"}); err != nil {
			b.Fatal(err)
		}
		bk.Close()
	}
}

// BenchmarkPlainCopy is the baseline: the same bytes written to one object, no validation.
func BenchmarkPlainCopy(b *testing.B) {
	data := benchArchive(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dir := b.TempDir()
		bk, err := fileblob.OpenBucket(dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		w, err := bk.NewWriter(context.Background(), "x", nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		bk.Close()
		_ = os.RemoveAll(filepath.Join(dir, "x"))
	}
}
