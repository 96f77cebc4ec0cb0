package builds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"gocloud.dev/blob"
)

// Unpack validates an archive again (the same walker as the upload) and writes it into dir, which
// must exist and be empty. Writes go through os.Root, so even a validator bug cannot write outside
// dir; files are created exclusively (never through an existing name).
func Unpack(format string, f *os.File, size int64, lim Limits, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("builds: unpack dir: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("builds: unpack dir %s is not empty", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("builds: unpack dir: %w", err)
	}
	defer root.Close()
	write := func(e Entry, r io.Reader) error {
		if parent := path.Dir(e.Name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("builds: unpack %q: %w", e.Name, err)
			}
		}
		switch e.Type {
		case TypeDir:
			if err := root.Mkdir(e.Name, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("builds: unpack %q: %w", e.Name, err)
			}
		case TypeSymlink:
			if err := root.Symlink(e.Link, e.Name); err != nil {
				return fmt.Errorf("builds: unpack %q: %w", e.Name, err)
			}
		case TypeHardlink:
			if err := root.Link(e.Link, e.Name); err != nil {
				return fmt.Errorf("builds: unpack %q: %w", e.Name, err)
			}
		case TypeFile:
			out, err := root.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.Mode|0o600)
			if err != nil {
				return fmt.Errorf("builds: unpack %q: %w", e.Name, err)
			}
			_, err = io.Copy(out, r)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return wrapRead(e.Name, err)
			}
			// Creation honours the umask; set the (already stripped) bits exactly.
			if err := root.Chmod(e.Name, e.Mode|0o600); err != nil {
				return fmt.Errorf("builds: unpack %q: %w", e.Name, err)
			}
		}
		return nil
	}
	switch format {
	case FormatTarGz:
		return WalkTarGz(f, lim, write)
	case FormatZip:
		return WalkZip(f, size, lim, write)
	}
	return invalid("format %q: want %s or %s", format, FormatTarGz, FormatZip)
}

// ErrDigest is returned when stored bytes do not hash to the build's sha256.
var ErrDigest = errors.New("build digest mismatch")

// Fetch downloads build sha of tenant from the bucket into work/build.<format> verifying its
// sha256, then unpacks it into work/root (created empty) and makes the entrypoint executable.
// It returns the manifest and the absolute entrypoint path.
//
// A work dir an earlier Fetch completed for the same build (the Kubernetes init container's) is
// reused without touching the bucket; b may then be nil.
func Fetch(ctx context.Context, b *blob.Bucket, tenant, sha string, lim Limits, work string) (Manifest, string, error) {
	done := filepath.Join(work, "fetched.json")
	if data, err := os.ReadFile(done); err == nil {
		var m Manifest
		if err := json.Unmarshal(data, &m); err == nil && m.SHA256 == sha && m.Tenant == tenant {
			return m, filepath.Join(work, "root", filepath.FromSlash(m.Entrypoint)), nil
		}
		return Manifest{}, "", fmt.Errorf("builds: work dir %s holds another build; use an empty one", work)
	}
	if b == nil {
		return Manifest{}, "", errors.New("builds: fetch needs a bucket")
	}
	st := NewStore(b, lim, work)
	m, r, err := st.Open(ctx, tenant, sha)
	if err != nil {
		return Manifest{}, "", err
	}
	defer r.Close()
	archive := filepath.Join(work, "build."+m.Format)
	f, err := os.OpenFile(archive, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Manifest{}, "", fmt.Errorf("builds: fetch: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, lim.MaxArchiveBytes+1))
	if err != nil {
		return Manifest{}, "", fmt.Errorf("builds: fetch %s: %w", sha, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return Manifest{}, "", fmt.Errorf("%w: stored object hashes to %s, want %s", ErrDigest, got, sha)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, "", err
	}
	dir := filepath.Join(work, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return Manifest{}, "", fmt.Errorf("builds: fetch: %w", err)
	}
	if err := Unpack(m.Format, f, size, lim, dir); err != nil {
		return Manifest{}, "", err
	}
	ep := filepath.Join(dir, filepath.FromSlash(m.Entrypoint))
	if err := os.Chmod(ep, 0o755); err != nil {
		return Manifest{}, "", fmt.Errorf("builds: entrypoint: %w", err)
	}
	// The archive is no longer needed; the marker says the unpacked tree is complete and verified.
	_ = os.Remove(archive)
	data, _ := json.Marshal(m)
	if err := os.WriteFile(done, data, 0o644); err != nil {
		return Manifest{}, "", fmt.Errorf("builds: fetch: %w", err)
	}
	return m, ep, nil
}
