package director

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode"
)

// fileLock is an exclusive flock held for the director's life, so a second director on the same
// machine refuses to start instead of double-placing. The kernel drops it if the process dies.
type fileLock struct{ f *os.File }

func lockFile(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("director: lock-file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("director: another director holds %s (one director at a time places sessions)", path)
		}
		return nil, fmt.Errorf("director: lock %s: %w", path, err)
	}
	return &fileLock{f: f}, nil
}

func (l *fileLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

// DefaultLockFile is the lock file of a director serving controlAddr on this machine: in the
// user's runtime directory ($XDG_RUNTIME_DIR, else the user cache directory), named after the
// control address. Per user, so another user's director (or a stale file of theirs in /tmp) never
// blocks this one; per control address, because that is what two directors on one machine must not
// share (the game servers report to it).
func DefaultLockFile(controlAddr string) (string, error) {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("director: no runtime dir for the lock file ($XDG_RUNTIME_DIR unset, %w); set -lock-file", err)
		}
		dir = cache
	}
	dir = filepath.Join(dir, "kumi")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("director: lock dir: %w", err)
	}
	name := strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return '_'
	}, controlAddr)
	return filepath.Join(dir, "director-"+name+".lock"), nil
}
