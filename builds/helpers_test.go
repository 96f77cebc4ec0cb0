package builds

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"io"
	"io/fs"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// fakeELF is a minimal 64-bit little-endian ELF header for machine m (no program or section
// headers): enough for debug/elf, and what tests use instead of a real server binary when only
// validation is under test.
func fakeELF(m elf.Machine) []byte {
	b := make([]byte, 64)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	b[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	b[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(b[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(b[18:], uint16(m))
	binary.LittleEndian.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	binary.LittleEndian.PutUint16(b[52:], 64) // ehsize
	return b
}

// ent is one entry of a test archive.
type ent struct {
	name string
	typ  byte // tar type flag
	mode int64
	body []byte
	link string
	size int64 // declared size when body is nil and typ is a regular file: that many zero bytes
}

func file(name string, body []byte) ent {
	return ent{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}

// server is the entry every valid Unreal build has.
func server(project string) ent {
	e := file(project+"/Binaries/Linux/"+project+"Server", fakeELF(elf.EM_X86_64))
	e.mode = 0o755
	return e
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func tarGz(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Format: tar.FormatPAX}
		var body io.Reader
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
			body = bytes.NewReader(e.body)
			if e.body == nil {
				h.Size, body = e.size, io.LimitReader(zeroReader{}, e.size)
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipOf(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := fs.FileMode(e.mode)
		switch e.typ {
		case tar.TypeDir:
			mode |= fs.ModeDir
		case tar.TypeSymlink:
			mode |= fs.ModeSymlink
			e.body = []byte(e.link)
		case tar.TypeFifo:
			mode |= fs.ModeNamedPipe
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		body := io.Reader(bytes.NewReader(e.body))
		if e.body == nil && e.typ == tar.TypeReg {
			body = io.LimitReader(zeroReader{}, e.size)
		}
		if _, err := io.Copy(w, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testLimits are small so that bombs and floods stay cheap to build.
func testLimits() Limits {
	return Limits{
		MaxArchiveBytes:      8 << 20,
		MaxUncompressedBytes: 32 << 20,
		MaxEntries:           500,
		MaxRatio:             100,
		RatioFloor:           1 << 20,
		MaxPathBytes:         256,
	}
}

// newTestStore is a Store over a fileblob bucket in a temp dir; it returns the bucket's dir and
// the spool dir so tests can check that refusals leave nothing behind.
func newTestStore(t testing.TB) (*Store, string, string) {
	t.Helper()
	dir, tmp := t.TempDir(), t.TempDir()
	b, err := fileblob.OpenBucket(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return NewStore(b, testLimits(), tmp), dir, tmp
}

// keys lists every object in the bucket.
func keys(t testing.TB, b *blob.Bucket) []string {
	t.Helper()
	var out []string
	it := b.List(nil)
	for {
		o, err := it.Next(context.Background())
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Key)
	}
}
