package builds

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Archive formats accepted for upload.
const (
	FormatTarGz = "tar.gz"
	FormatZip   = "zip"
)

// Limits bound what one build archive may hold. Each refusal names the entry and the limit.
type Limits struct {
	MaxArchiveBytes      int64 `flag:"max-archive-bytes" help:"largest upload (compressed archive bytes); also the cap of the zip spool file"`
	MaxUncompressedBytes int64 `flag:"max-uncompressed-bytes" help:"most bytes all entries may hold once unpacked"`
	MaxEntries           int   `flag:"max-entries" help:"most entries (files, directories, links) in one archive"`
	MaxRatio             int64 `flag:"max-ratio" help:"largest uncompressed/compressed ratio (zip and tar bombs); checked once ratio-floor bytes are unpacked"`
	RatioFloor           int64 `flag:"ratio-floor" help:"unpacked bytes below which the compression ratio is not checked (tiny, very compressible files are normal)"`
	MaxPathBytes         int   `flag:"max-path-bytes" help:"longest entry path"`
}

// DefaultLimits fits an Unreal Linux dedicated server (typically 0.3–3 GB unpacked, a few
// thousand files, compressing about 3:1); the ratio cap of 100 is far above any real build and far
// below a bomb (tens of thousands to one).
func DefaultLimits() Limits {
	return Limits{
		MaxArchiveBytes:      4 << 30,
		MaxUncompressedBytes: 16 << 30,
		MaxEntries:           100_000,
		MaxRatio:             100,
		RatioFloor:           16 << 20,
		MaxPathBytes:         1024,
	}
}

// ErrInvalid is wrapped by every refusal of an archive's content (as opposed to I/O failures).
var ErrInvalid = errors.New("invalid build archive")

// ErrTooLarge is wrapped (with ErrInvalid) by refusals for exceeding a size limit.
var ErrTooLarge = errors.New("build archive too large")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func tooLarge(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrInvalid, ErrTooLarge, fmt.Sprintf(format, args...))
}

// EntryType is the kind of an archive entry after validation: only these three survive.
type EntryType int

// Entry types.
const (
	TypeDir EntryType = iota
	TypeFile
	TypeSymlink
	TypeHardlink
)

// Entry is one validated archive entry.
type Entry struct {
	Name string      // clean, relative, slash-separated
	Type EntryType   //
	Mode fs.FileMode // permission bits only; setuid/setgid/sticky and group/other write are stripped
	Size int64       // bytes of a regular file
	Link string      // symlink target as written, or the hardlinked entry's clean name
}

// Visitor sees each validated entry; for a regular file r yields its bytes (reading them is what
// enforces the size and ratio limits, so a visitor that does not read still gets them checked by
// the walker draining r).
type Visitor func(e Entry, r io.Reader) error

// countingReader counts bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// walker holds the checks shared by both formats.
type walker struct {
	lim        Limits
	compressed func() int64 // compressed bytes consumed so far (for the ratio)
	entries    int
	total      int64                // uncompressed bytes so far
	seen       map[string]EntryType // clean name → type
}

func newWalker(lim Limits, compressed func() int64) *walker {
	return &walker{lim: lim, compressed: compressed, seen: make(map[string]EntryType)}
}

// cleanName checks an entry path and returns its clean form. Directories may end in "/".
func (w *walker) cleanName(raw string) (string, error) {
	if len(raw) > w.lim.MaxPathBytes {
		return "", invalid("entry %.80q...: path of %d bytes exceeds the limit of %d (max-path-bytes)", raw, len(raw), w.lim.MaxPathBytes)
	}
	switch {
	case raw == "" || raw == "/" || raw == "./":
		return "", invalid("entry with an empty path")
	case strings.ContainsAny(raw, "\x00\\"):
		return "", invalid("entry %q: path contains a NUL or backslash", raw)
	case strings.HasPrefix(raw, "/"):
		return "", invalid("entry %q: absolute path (entries must be relative to the build root)", raw)
	}
	for _, part := range strings.Split(strings.TrimSuffix(raw, "/"), "/") {
		if part == ".." {
			return "", invalid("entry %q: path traversal (\"..\" component)", raw)
		}
	}
	name := path.Clean(raw)
	if name == "." {
		return "", invalid("entry %q: names the build root itself", raw)
	}
	// A file under an earlier symlink would be written through the link on unpack.
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		switch t, ok := w.seen[dir]; {
		case ok && t != TypeDir:
			return "", invalid("entry %q: lies under %q, which is not a directory (writing through links is refused)", raw, dir)
		}
	}
	if _, dup := w.seen[name]; dup {
		return "", invalid("entry %q: appears twice in the archive", raw)
	}
	return name, nil
}

// count applies the entry-count limit.
func (w *walker) count(name string) error {
	w.entries++
	if w.entries > w.lim.MaxEntries {
		return tooLarge("entry %q: more than %d entries (max-entries)", name, w.lim.MaxEntries)
	}
	return nil
}

// checkLink refuses a symlink target that resolves outside the root.
func checkSymlink(name, target string) error {
	if target == "" || strings.ContainsAny(target, "\x00\\") {
		return invalid("symlink %q: empty or malformed target %q", name, target)
	}
	if strings.HasPrefix(target, "/") {
		return invalid("symlink %q -> %q: absolute target escapes the build root", name, target)
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return invalid("symlink %q -> %q: target escapes the build root", name, target)
	}
	return nil
}

// guard wraps an entry's reader so that the running uncompressed total and ratio are enforced
// while the bytes flow, not after: a bomb is stopped after at most one buffer past the limit.
type guard struct {
	w    *walker
	name string
	r    io.Reader
}

func (g *guard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.w.total += int64(n)
	if g.w.total > g.w.lim.MaxUncompressedBytes {
		return n, tooLarge("entry %q: unpacked size passes %d bytes (max-uncompressed-bytes)", g.name, g.w.lim.MaxUncompressedBytes)
	}
	if g.w.total > g.w.lim.RatioFloor {
		if c := max(g.w.compressed(), 1); g.w.total/c > g.w.lim.MaxRatio {
			return n, tooLarge("entry %q: compression ratio %d:1 exceeds %d:1 (max-ratio; a zip/tar bomb?)", g.name, g.w.total/c, g.w.lim.MaxRatio)
		}
	}
	return n, err
}

// visit checks the common parts of one entry and hands it to fn, then drains the file.
func (w *walker) visit(e Entry, body io.Reader, fn Visitor) error {
	w.seen[e.Name] = e.Type
	if e.Type != TypeFile {
		return fn(e, nil)
	}
	g := &guard{w: w, name: e.Name, r: body}
	if err := fn(e, g); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, g); err != nil {
		return wrapRead(e.Name, err)
	}
	return nil
}

func wrapRead(name string, err error) error {
	if errors.Is(err, ErrInvalid) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) ||
		errors.Is(err, zip.ErrChecksum) || errors.Is(err, zip.ErrFormat) || errors.Is(err, tar.ErrHeader) {
		return invalid("entry %q: truncated or corrupt archive: %v", name, err)
	}
	return fmt.Errorf("entry %q: %w", name, err)
}

// perm keeps only permission bits and drops group/other write: setuid, setgid and sticky bits are
// stripped rather than refused, since a build never needs them and packers sometimes set them.
func perm(m fs.FileMode) fs.FileMode { return m.Perm() &^ 0o022 }

// WalkTarGz validates a gzip-compressed tar stream entry by entry, calling fn for each. It reads r
// to its end (trailing bytes included) so the caller's hash covers every byte.
func WalkTarGz(r io.Reader, lim Limits, fn Visitor) error {
	src := &countingReader{r: r}
	br := bufio.NewReader(src)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return invalid("not a gzip stream (want a .tar.gz): %v", err)
	}
	compressed := func() int64 { return src.n - int64(br.Buffered()) }
	w := newWalker(lim, compressed)
	tr := tar.NewReader(zr)
	last := "(start of archive)"
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return wrapRead("after "+last, err)
		}
		last = h.Name
		if err := w.count(h.Name); err != nil {
			return err
		}
		name, err := w.cleanName(h.Name)
		if err != nil {
			return err
		}
		e := Entry{Name: name, Mode: perm(h.FileInfo().Mode())}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = TypeDir
		case tar.TypeReg, '\x00': // '\x00' is the pre-POSIX regular file flag (tar.TypeRegA, deprecated)
			e.Type, e.Size = TypeFile, h.Size
			if h.Size > lim.MaxUncompressedBytes {
				return tooLarge("entry %q: declares %d bytes, over %d (max-uncompressed-bytes)", h.Name, h.Size, lim.MaxUncompressedBytes)
			}
		case tar.TypeSymlink:
			if err := checkSymlink(name, h.Linkname); err != nil {
				return err
			}
			e.Type, e.Link = TypeSymlink, h.Linkname
		case tar.TypeLink:
			target := path.Clean(h.Linkname)
			if t, ok := w.seen[target]; !ok || t != TypeFile {
				return invalid("hardlink %q -> %q: target is not an earlier regular file of the archive", h.Name, h.Linkname)
			}
			e.Type, e.Link = TypeHardlink, target
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return invalid("entry %q: device or fifo entries are refused", h.Name)
		case tar.TypeXGlobalHeader:
			w.entries--
			continue
		default:
			return invalid("entry %q: unsupported tar entry type %q", h.Name, h.Typeflag)
		}
		if err := w.visit(e, tr, fn); err != nil {
			return err
		}
	}
	if err := zr.Close(); err != nil {
		return invalid("gzip: %v", err)
	}
	// Drain: a second gzip member or padding still counts toward the upload and its hash.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("reading the rest of the upload: %w", err)
	}
	if w.entries == 0 {
		return invalid("archive has no entries")
	}
	return nil
}

// WalkZip validates a zip archive (which needs random access: the central directory is at its
// end) entry by entry, calling fn for each.
func WalkZip(ra io.ReaderAt, size int64, lim Limits, fn Visitor) error {
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return invalid("not a zip archive: %v", err)
	}
	var read int64 // compressed bytes of the entries visited so far
	w := newWalker(lim, func() int64 { return read })
	if len(zr.File) > lim.MaxEntries {
		return tooLarge("archive: %d entries exceed the limit of %d (max-entries)", len(zr.File), lim.MaxEntries)
	}
	for _, f := range zr.File {
		if err := w.count(f.Name); err != nil {
			return err
		}
		name, err := w.cleanName(f.Name)
		if err != nil {
			return err
		}
		mode := f.Mode()
		e := Entry{Name: name, Mode: perm(mode)}
		switch {
		case mode.IsDir():
			e.Type = TypeDir
		case mode.IsRegular():
			e.Type, e.Size = TypeFile, int64(f.UncompressedSize64)
			if f.UncompressedSize64 > uint64(lim.MaxUncompressedBytes) {
				return tooLarge("entry %q: declares %d bytes, over %d (max-uncompressed-bytes)", f.Name, f.UncompressedSize64, lim.MaxUncompressedBytes)
			}
			if c := max(int64(f.CompressedSize64), 1); int64(f.UncompressedSize64) > lim.RatioFloor && int64(f.UncompressedSize64)/c > lim.MaxRatio {
				return tooLarge("entry %q: compression ratio %d:1 exceeds %d:1 (max-ratio; a zip bomb?)", f.Name, int64(f.UncompressedSize64)/c, lim.MaxRatio)
			}
		case mode&fs.ModeSymlink != 0:
			rc, err := f.Open()
			if err != nil {
				return wrapRead(f.Name, err)
			}
			target, err := io.ReadAll(io.LimitReader(rc, int64(lim.MaxPathBytes)+1))
			rc.Close()
			if err != nil {
				return wrapRead(f.Name, err)
			}
			if err := checkSymlink(name, string(target)); err != nil {
				return err
			}
			e.Type, e.Link = TypeSymlink, string(target)
		default:
			return invalid("entry %q: device, fifo or socket entries are refused", f.Name)
		}
		if e.Type == TypeFile {
			rc, err := f.Open()
			if err != nil {
				return wrapRead(f.Name, err)
			}
			read += int64(f.CompressedSize64)
			err = w.visit(e, rc, fn)
			rc.Close()
			if err != nil {
				return err
			}
			continue
		}
		if err := w.visit(e, nil, fn); err != nil {
			return err
		}
	}
	if w.entries == 0 {
		return invalid("archive has no entries")
	}
	return nil
}

// UnrealEntrypoint reports whether name is the Unreal layout's server binary
// `<Project>/Binaries/Linux/<Project>Server`, and the project.
func UnrealEntrypoint(name string) (project string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[1] != "Binaries" || parts[2] != "Linux" {
		return "", false
	}
	if parts[0] == "" || parts[3] != parts[0]+"Server" {
		return "", false
	}
	return parts[0], true
}

// CheckELF refuses anything but a Linux x86-64 ELF executable (or PIE). name is for the message.
func CheckELF(name string, ra io.ReaderAt) error {
	f, err := elf.NewFile(ra)
	if err != nil {
		return invalid("entrypoint %q: not an ELF executable: %v", name, err)
	}
	defer f.Close()
	switch {
	case f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64:
		return invalid("entrypoint %q: ELF for %s/%s; kumi runs Linux x86-64 (ELFCLASS64, EM_X86_64) servers", name, f.Class, f.Machine)
	case f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN:
		return invalid("entrypoint %q: ELF type %s is not an executable", name, f.Type)
	case f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX:
		return invalid("entrypoint %q: ELF OS ABI %s is not Linux", name, f.OSABI)
	}
	return nil
}

// spoolELF copies an entrypoint's bytes to a temporary file (debug/elf needs random access: the
// section headers sit at the end) and checks it there.
func spoolELF(dir, name string, r io.Reader) error {
	f, err := os.CreateTemp(dir, "kumi-elf-*")
	if err != nil {
		return fmt.Errorf("spooling entrypoint: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return wrapRead(name, err)
	}
	return CheckELF(name, f)
}
