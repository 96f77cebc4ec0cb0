package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kumi-dev/kumi/local"
)

// TestConsoleInChromium runs `kumi local`, opens the console URL it prints in a real headless
// Chromium and checks what an operator would: the page loads with no console errors, exceptions or
// failed loads (CSP violations included); its cards name exactly the servers the director's admin
// API lists; and a weight typed into the page's form and submitted reaches the director (GET
// /weights shows it).
func TestConsoleInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): install it with scripts/tools.d/40-chromium.sh (apt-get install chromium)", err)
	}
	cfg := testLocalConfig(t)
	w := &signalWriter{want: "serving;", seen: make(chan struct{})}
	cfg.Out = w
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- local.Run(ctx, slog.New(slog.DiscardHandler), cfg) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("kumi local: %v", err)
		}
	}()
	select {
	case <-w.seen:
	case err := <-errc:
		errc <- err
		t.Fatalf("kumi local ended before serving: %v", err)
	}
	w.mu.Lock()
	out := w.buf.String()
	w.mu.Unlock()
	consoleURL := regexp.MustCompile(`console: (http://127\.0\.0\.1:\d+/)`).FindStringSubmatch(out)
	adminAddr := regexp.MustCompile(`admin http://(127\.0\.0\.1:\d+)/pool`).FindStringSubmatch(out)
	if consoleURL == nil || adminAddr == nil {
		t.Fatalf("kumi local did not print the console URL and admin address:\n%s", out)
	}
	tok, err := os.ReadFile(filepath.Join(cfg.KeyDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	admin := adminClient{base: "http://" + adminAddr[1], token: strings.TrimSpace(string(tok))}

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	// Every console message (console API calls, uncaught exceptions, the browser log: failed loads,
	// CSP violations) from the start of the page; warnings and worse are failures.
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the browser stopped with the test
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				mu.Unlock()
			}
		}
	}()
	poll := func(expr string) error {
		_, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(60*time.Second)))
		return err
	}
	// The page is live once the event stream is open and a state drew the server cards.
	if err := chromedp.Do(bctx, chromedp.Navigate(consoleURL[1]), chromedp.WaitVisible(`#servers .card`)); err != nil {
		t.Fatalf("console page: %v", err)
	}
	if err := poll(`document.getElementById('conn').textContent === 'live'`); err != nil {
		t.Fatalf("console event stream: %v", err)
	}

	// The cards name the servers the director reports. The pool can change between the two reads
	// (a refill), so both are read again until they agree.
	var cards, pool []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		pool = admin.poolNames(ctx, t)
		if cards, err = chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#servers .card h3')].map(e => e.textContent)`)); err != nil {
			t.Fatal(err)
		}
		if slices.Equal(cards, pool) && len(pool) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console cards %v, director's pool %v", cards, pool)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond): // re-read: no event says when both were refreshed
		}
	}

	// Change the weight in the page: type it, submit the form, wait for the page's answer.
	// kumi local has one backend, its local fleet ("local:kumi"), at the whole weight.
	const backend = "local:kumi"
	if w := admin.weights(ctx, t); len(w) != 1 || w[backend] != 100 {
		t.Fatalf("weights before the change %v, want only %s at 100", w, backend)
	}
	input := fmt.Sprintf(`#weights input[name=%q]`, backend)
	if err := chromedp.Do(bctx,
		chromedp.WaitVisible(input),
		chromedp.Focus(input), // a focused field keeps what is typed while states arrive
	); err != nil {
		t.Fatalf("weight field in the page: %v", err)
	}
	// Clear it from the page: chromedp.SetValue makes Chromium warn `The specified value
	// "undefined" cannot be parsed` on a number input.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).value = ''`, input))); err != nil {
		t.Fatalf("clearing the weight field: %v", err)
	}
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(input, "37.5"),
		chromedp.Click(`#weights button[type=submit]`),
	); err != nil {
		t.Fatalf("weight change in the page: %v", err)
	}
	if err := poll(`document.getElementById('weights-status').className !== 'status'`); err != nil {
		t.Fatalf("the page did not answer the weight change: %v", err)
	}
	status, err := chromedp.Run(bctx, chromedp.Text(`#weights-status`))
	if err != nil {
		t.Fatal(err)
	}
	class, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('weights-status').className`))
	if err != nil || class != "status ok" {
		t.Fatalf("the page refused the weight change: %q (%v)", status, err)
	}
	if w := admin.weights(ctx, t); w[backend] != 37.5 {
		t.Fatalf("GET /weights after the page's change: %v (page said %q), want %s at 37.5", w, status, backend)
	}
	// The event stream brings the change back into the page (the backend panel shows it).
	if err := poll(fmt.Sprintf(`(document.querySelector('#backends [data-backend=%q]')?.textContent ?? '').includes('weight 37.5%%')`, backend)); err != nil {
		t.Fatalf("the page did not show the new weight: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the console page logged problems:\n%s", strings.Join(problems, "\n"))
	}
}

// adminClient calls the director's admin API as an operator's script does.
type adminClient struct{ base, token string }

func (a adminClient) get(ctx context.Context, t *testing.T, path string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, buf.String())
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// poolNames is the servers GET /pool lists, by name.
func (a adminClient) poolNames(ctx context.Context, t *testing.T) []string {
	var pool struct {
		Servers []struct {
			Name string `json:"name"`
		} `json:"servers"`
	}
	a.get(ctx, t, "/pool", &pool)
	names := []string{}
	for _, s := range pool.Servers {
		names = append(names, s.Name)
	}
	return names
}

func (a adminClient) weights(ctx context.Context, t *testing.T) map[string]float64 {
	var w struct {
		Weights map[string]float64 `json:"weights"`
	}
	a.get(ctx, t, "/weights", &w)
	return w.Weights
}
