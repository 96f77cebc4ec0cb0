package nodeoperator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Drainer asks kumi's director to drain one game server: it leaves the pool at once and its
// sessions move to other servers.
type Drainer interface {
	Drain(ctx context.Context, server string) error
}

// DirectorAdmin is Drainer over the director's admin API: POST /drain with a JSON body
// {"server": NAME} (the director refuses query-string actions: director/admin.go) and, when
// TokenFile is set, "Authorization: Bearer <token>". 404 means the director does not pool that
// server, which is success here (nothing to move).
type DirectorAdmin struct {
	BaseURL   string
	TokenFile string // re-read on every call so a rotated Secret takes effect
	HTTP      *http.Client
}

// Drain implements Drainer.
func (d *DirectorAdmin) Drain(ctx context.Context, server string) error {
	body, _ := json.Marshal(map[string]string{"server": server})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		strings.TrimRight(d.BaseURL, "/")+"/drain", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("director drain: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if d.TokenFile != "" {
		tok, err := os.ReadFile(d.TokenFile)
		if err != nil {
			return fmt.Errorf("director drain: -director-token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	hc := d.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("director drain %s: %w", server, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode/100 == 2, resp.StatusCode == http.StatusNotFound:
		return nil
	default:
		return fmt.Errorf("director drain %s: %s: %s", server, resp.Status, bytes.TrimSpace(b))
	}
}
