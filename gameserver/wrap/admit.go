package wrap

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/kumi-dev/kumi/internal/token"
)

// AdmitRequest is the body of POST /v1/admit: the token a player put in its travel URL
// (`?token=...`), as the server's PreLogin received it.
type AdmitRequest struct {
	Token string `json:"token"`
}

// AdmitResponse answers an admitted player: bind PlayerID to the connection.
type AdmitResponse struct {
	PlayerID  string `json:"player_id"`
	SessionID string `json:"session_id"`
}

// admitter verifies server tokens for the wrapped server: audience = this server, session = this
// server's one match (the first admitted token's session, or the one the allocation named), each
// token once.
type admitter struct {
	v    *token.Verifier
	name string
	now  func() time.Time

	// admitted is closed at the first admission: the match has started (the wrapper's max-match
	// runs from then).
	admitted chan struct{}

	mu      sync.Mutex
	session string               // pinned match; "" until the first admission
	used    map[string]time.Time // jti → expiry, pruned as they expire
}

func newAdmitter(v *token.Verifier, name, session string) *admitter {
	return &admitter{v: v, name: name, session: session, now: time.Now, used: map[string]time.Time{}, admitted: make(chan struct{})}
}

// errSession is a token for another match than the one this server holds.
var errSession = errors.New("token is for another session")

// errReplayed is a token that was already used.
var errReplayed = errors.New("token already used: each server token admits once; ask for a new assignment")

func (a *admitter) admit(raw string) (token.ServerClaims, error) {
	c, err := a.v.VerifyServerToken(raw, a.name)
	if err != nil {
		return c, err
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for j, exp := range a.used {
		if now.After(exp.Add(time.Minute)) { // past expiry (plus leeway) the verifier refuses it anyway
			delete(a.used, j)
		}
	}
	if _, dup := a.used[c.ID]; dup {
		return c, errReplayed
	}
	if a.session == "" {
		a.session = c.SessionID
	} else if c.SessionID != a.session {
		return c, errSession
	}
	select {
	case <-a.admitted:
	default:
		close(a.admitted)
	}
	a.used[c.ID] = c.ExpiresAt
	return c, nil
}

// ServeHTTP is POST /v1/admit. Only the sandboxed server reaches it (it listens on loopback inside
// the sandbox's network namespace).
func (a *admitter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/admit" {
		http.Error(w, `{"error":"POST /v1/admit {\"token\":\"...\"}"}`, http.StatusNotFound)
		return
	}
	var req AdmitRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil || req.Token == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: want {\"token\":\"<the ?token= option>\"}"})
		return
	}
	c, err := a.admit(req.Token)
	if err != nil {
		code := http.StatusForbidden
		if errors.Is(err, errReplayed) || errors.Is(err, errSession) {
			code = http.StatusConflict
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, AdmitResponse{PlayerID: c.PlayerID, SessionID: c.SessionID})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
