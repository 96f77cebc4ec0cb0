package builds

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"path"
	"strings"
	"testing"
)

// checker is a Visitor asserting the invariants every accepted entry must hold, whatever the
// bytes were, and counting the bytes handed out.
func checker(t *testing.T, total *int64) Visitor {
	return func(e Entry, r io.Reader) error {
		if e.Name == "" || strings.HasPrefix(e.Name, "/") || e.Name != path.Clean(e.Name) || e.Name == ".." || strings.HasPrefix(e.Name, "../") {
			t.Fatalf("accepted unclean name %q", e.Name)
		}
		if e.Mode&^0o755 != 0 {
			t.Fatalf("entry %q kept mode bits %v", e.Name, e.Mode)
		}
		if e.Type == TypeSymlink {
			if res := path.Join(path.Dir(e.Name), e.Link); strings.HasPrefix(e.Link, "/") || res == ".." || strings.HasPrefix(res, "../") {
				t.Fatalf("accepted escaping symlink %q -> %q", e.Name, e.Link)
			}
		}
		if r != nil {
			n, err := io.Copy(io.Discard, r)
			*total += n
			return err
		}
		return nil
	}
}

func fuzzLimits() Limits {
	lim := testLimits()
	lim.MaxUncompressedBytes, lim.RatioFloor = 4<<20, 64<<10
	return lim
}

// FuzzTarGz feeds arbitrary bytes to the tar.gz walker: it must never panic, never hand out more
// than the unpacked-size limit, and only accept entries holding the invariants.
// Seeds: testdata/fuzz/FuzzTarGz.
func FuzzTarGz(f *testing.F) {
	f.Add(tarGz(f, server("Game"), file("Game/a", []byte("a")), ent{name: "Game/l", typ: tar.TypeSymlink, link: "a"}))
	f.Add(tarGz(f, ent{name: "d/", typ: tar.TypeDir, mode: 0o7777}, ent{name: "d/h", typ: tar.TypeLink, link: "d"}))
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		var total int64
		_ = WalkTarGz(bytes.NewReader(data), lim, checker(t, &total))
		if total > lim.MaxUncompressedBytes+(1<<20) {
			t.Fatalf("handed out %d bytes, limit %d", total, lim.MaxUncompressedBytes)
		}
	})
}

// FuzzZip is FuzzTarGz for zip archives. Seeds: testdata/fuzz/FuzzZip.
func FuzzZip(f *testing.F) {
	f.Add(zipOf(f, server("Game"), file("Game/a", []byte("a")), ent{name: "Game/l", typ: tar.TypeSymlink, link: "a"}))
	f.Add(zipOf(f, file("Game/Binaries/Linux/GameServer", fakeELF(elf.EM_AARCH64))))
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		var total int64
		_ = WalkZip(bytes.NewReader(data), int64(len(data)), lim, checker(t, &total))
		if total > lim.MaxUncompressedBytes+(1<<20) {
			t.Fatalf("handed out %d bytes, limit %d", total, lim.MaxUncompressedBytes)
		}
		_, _ = InspectZip(bytes.NewReader(data), int64(len(data)), lim, "", t.TempDir())
	})
}
