package serverid

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenFile verifies operator-issued bootstrap tokens of game servers no backend starts (a
// hand-started `kumi gameserver` the director adopts): neither a local fleet's per-process secret
// nor a Kubernetes pod token exists for them. The operator mints one random token per server name,
// gives the server its token (its -director-bootstrap-file), and lists the token's SHA-256 under
// that name in the director's file, one server a line:
//
//	# server  sha256:<hex of SHA-256(token)>
//	vm-eu-1   sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// A token proves only the name it is listed under. The file holds digests, not tokens, so reading
// it does not let anyone register. It is re-read when its modification time changes, so servers
// are added or revoked (their line deleted) without a restart; a revoked server's credential
// lapses within its TTL, as it cannot register again. A reload that fails keeps the last good list,
// and refusals say why.
type TokenFile struct {
	path string

	mu      sync.Mutex
	mod     time.Time
	digests map[string][sha256.Size]byte
	loadErr error // the last reload's error; nil when the list is current
}

// NewTokenFile reads path; a missing or malformed file is an error naming the line.
func NewTokenFile(path string) (*TokenFile, error) {
	tf := &TokenFile{path: path}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("serverid: bootstrap tokens: %w", err)
	}
	if err := tf.load(st.ModTime()); err != nil {
		return nil, err
	}
	return tf, nil
}

// load reads the file into the list; the caller holds mu or owns tf.
func (tf *TokenFile) load(mod time.Time) error {
	b, err := os.ReadFile(tf.path)
	if err != nil {
		return fmt.Errorf("serverid: bootstrap tokens: %w", err)
	}
	digests, err := ParseTokenDigests(b)
	if err != nil {
		return fmt.Errorf("serverid: bootstrap tokens %s: %w", tf.path, err)
	}
	tf.digests, tf.mod = digests, mod
	return nil
}

// ParseTokenDigests parses the file format of TokenFile: "server sha256:<64 hex digits>" lines,
// blank lines and # comments; a server listed twice is an error.
func ParseTokenDigests(b []byte) (map[string][sha256.Size]byte, error) {
	digests := map[string][sha256.Size]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<server> sha256:<hex>\", got %d fields", n, len(fields))
		}
		server, sum := fields[0], fields[1]
		h, ok := strings.CutPrefix(sum, "sha256:")
		raw, err := hex.DecodeString(h)
		if !ok || err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("line %d: server %q: digest must be sha256: and 64 hex digits (the SHA-256 of the token, not the token)", n, server)
		}
		if _, dup := digests[server]; dup {
			return nil, fmt.Errorf("line %d: server %q listed twice", n, server)
		}
		digests[server] = [sha256.Size]byte(raw)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return digests, nil
}

// TokenDigestLine returns the line listing token for server (what the operator appends to the
// director's file after giving the server its token).
func TokenDigestLine(server, token string) string {
	sum := sha256.Sum256([]byte(token))
	return server + " sha256:" + hex.EncodeToString(sum[:])
}

// VerifyBootstrap implements Verifier: proof must be the token listed for server.
func (tf *TokenFile) VerifyBootstrap(_ context.Context, server, proof string) error {
	tf.mu.Lock()
	if st, err := os.Stat(tf.path); err != nil {
		tf.loadErr = fmt.Errorf("serverid: bootstrap tokens: %w", err)
	} else if !st.ModTime().Equal(tf.mod) {
		tf.loadErr = tf.load(st.ModTime())
	}
	want, ok := tf.digests[server]
	loadErr := tf.loadErr
	tf.mu.Unlock()
	got := sha256.Sum256([]byte(proof))
	if ok && proof != "" && subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
		return nil
	}
	err := fmt.Errorf("%w: not the bootstrap token listed for %q in %s", ErrNotProven, server, tf.path)
	if loadErr != nil {
		err = errors.Join(err, fmt.Errorf("the file's last change was not applied: %w", loadErr))
	}
	return err
}
