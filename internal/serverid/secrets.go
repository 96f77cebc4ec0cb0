package serverid

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sync"
)

// EnvBootstrap is the environment variable through which a local fleet hands each game-server
// process its own bootstrap secret (gameserver reads it when -director-bootstrap-file is unset).
const EnvBootstrap = "KUMI_SERVER_BOOTSTRAP"

// Secrets holds one bootstrap secret per local game-server process: the fleet mints one when it
// starts a process and forgets it when the process is gone, so no secret is shared by two
// servers and a process's secret proves only its own name. The zero value is ready.
type Secrets struct {
	mu     sync.Mutex
	byName map[string][sha256.Size]byte
}

// Mint returns a new random secret for server, replacing any earlier one.
func (s *Secrets) Mint(server string) string {
	secret := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byName == nil {
		s.byName = make(map[string][sha256.Size]byte)
	}
	s.byName[server] = sha256.Sum256([]byte(secret))
	return secret
}

// Forget drops server's secret: the process is gone.
func (s *Secrets) Forget(server string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byName, server)
}

// VerifyBootstrap implements Verifier: proof must be the secret minted for server.
func (s *Secrets) VerifyBootstrap(_ context.Context, server, proof string) error {
	got := sha256.Sum256([]byte(proof))
	s.mu.Lock()
	want, ok := s.byName[server]
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return fmt.Errorf("%w: not the local fleet's secret for %q", ErrNotProven, server)
	}
	return nil
}
