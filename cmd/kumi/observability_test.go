package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/kumi-dev/kumi/internal/logbuf"
	"github.com/kumi-dev/kumi/local"
)

// The dashboard and the alert rules in install/observability (and their copies in the chart) use
// only metric names a running kumi local exports: a renamed metric breaks this test, not a
// dashboard in production.
func TestObservabilityMetricNamesExist(t *testing.T) {
	exprs := observabilityExprs(t)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := local.Default()
	cfg.Players, cfg.Duration, cfg.GroupSize = 12, 3*time.Second, 4
	cfg.LateShare, cfg.LeaveShare = 0.3, 0.1
	cfg.OMFrontendAddr, cfg.OMBackendAddr, cfg.OMQueryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.MMFAddr, cfg.FrontendAddr, cfg.FrontendHTTP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ControlAddr, cfg.AdminAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ConsoleAddr = "127.0.0.1:0"
	cfg.KeyDir = t.TempDir()
	cfg.GameServerCommand = []string{exe, "gameserver"}
	// Info level: each game server logs where its /metrics listens.
	cfg.GameServerEnv = []string{asKumiEnv + "=1", "KUMI_LOG_LEVEL=info", "GORACE=atexit_sleep_ms=0"}
	gsOut := &logbuf.Buffer{}
	cfg.GameServerOutput = gsOut
	cfg.Out = io.Discard

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	s, err := local.Start(ctx, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = s.Wait() }()
	if _, err := local.RunCrowd(ctx, log, cfg, s); err != nil {
		t.Fatal(err)
	}

	// An operator's drain through the admin API: the only path that counts kumi_director_drains_total
	// (the crowd's scale-in drains are the pool's own).
	adminDrain(ctx, t, "http://"+s.Director.AdminAddr(), s.AdminToken)

	have := map[string]bool{}
	scrape(ctx, t, "http://"+s.Metrics.Addr()+"/metrics", have)
	addrs := regexp.MustCompile(`metrics listening.* addr=(127\.0\.0\.1:\d+)`).FindAllStringSubmatch(gsOut.String(), -1)
	scraped := 0
	for _, m := range addrs {
		// Game servers drained by the crowd's scale-in have exited; any live one serves every name.
		if scrapeErr := tryScrape(ctx, "http://"+m[1]+"/metrics", have); scrapeErr == nil {
			scraped++
		}
	}
	if scraped == 0 {
		t.Fatalf("no game server's /metrics could be scraped (addresses logged: %v)", addrs)
	}

	for _, e := range exprs {
		used, err := metricNames(e.expr)
		if err != nil {
			t.Errorf("%s: %v", e.where, err)
			continue
		}
		if len(used) == 0 {
			t.Errorf("%s: %q uses no kumi metric", e.where, e.expr)
		}
		for _, n := range used {
			if !have[n] {
				t.Errorf("%s: metric %s is not exported by kumi local (expr %q)", e.where, n, e.expr)
			}
		}
	}
	if t.Failed() {
		var names []string
		for n := range have {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Logf("exported: %v", names)
	}
}

type observedExpr struct{ where, expr string }

// observabilityExprs reads every PromQL expression of the dashboard and the rules, and checks the
// chart carries the same files.
func observabilityExprs(t *testing.T) []observedExpr {
	t.Helper()
	dir := filepath.Join("..", "..", "install", "observability")
	chartDir := filepath.Join("..", "..", "install", "helm", "kumi", "files", "observability")
	var out []observedExpr
	for _, f := range []string{"kumi-dashboard.json", "kumi-alerts.yaml"} {
		a, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(chartDir, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (%v): copy it: cp %s %s", filepath.Join(chartDir, f), filepath.Join(dir, f), err, filepath.Join(dir, f), chartDir)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "kumi-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, observedExpr{"panel " + p.Title, tg.Expr})
		}
	}
	if raw, err = os.ReadFile(filepath.Join(dir, "kumi-alerts.yaml")); err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("rules: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, observedExpr{"alert " + r.Alert, r.Expr})
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d expressions read; the files' layout changed?", len(out))
	}
	return out
}

func scrape(ctx context.Context, t *testing.T, url string, have map[string]bool) {
	t.Helper()
	if err := tryScrape(ctx, url, have); err != nil {
		t.Fatal(err)
	}
}

// tryScrape adds every series name url exports (histograms as _bucket, _sum and _count) to have.
func tryScrape(ctx context.Context, url string, have map[string]bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	for n, f := range fams {
		have[n] = true
		if f.GetType().String() == "HISTOGRAM" {
			have[n+"_bucket"], have[n+"_sum"], have[n+"_count"] = true, true, true
		}
	}
	return nil
}

// adminDrain drains the first accepting server the director's admin API lists.
func adminDrain(ctx context.Context, t *testing.T, base, token string) {
	t.Helper()
	var pool struct {
		Servers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"servers"`
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/pool", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("GET /pool: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&pool)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET /pool: %v", err)
	}
	for _, srv := range pool.Servers {
		if srv.State != "accepting" {
			continue
		}
		body, _ := json.Marshal(map[string]string{"server": srv.Name})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/drain", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /drain %s: %s", srv.Name, resp.Status)
		}
		return
	}
	t.Fatalf("no accepting server to drain in %+v", pool.Servers)
}

// metricNames parses expr as PromQL (Prometheus' own parser, so a syntax error fails too) and
// returns the metric name of every vector selector in it.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", expr, err)
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out, nil
}
