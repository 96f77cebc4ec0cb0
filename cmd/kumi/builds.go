package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	// Bucket drivers the builds API and the wrapper may open: file:// locally, gs:// and s3:// in
	// production (credentials from the environment, as each SDK documents).
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/builds/fleet"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/token"
)

// buildsTokenFlags is `kumi builds token`: a developer token for local use.
type buildsTokenFlags struct {
	Key     string        `flag:"key" help:"PEM private key file (from kumi token keygen)"`
	KID     string        `flag:"kid" help:"key id; empty uses the key's RFC 7638 thumbprint"`
	Issuer  string        `flag:"issuer" help:"token issuer (iss)"`
	Tenant  string        `flag:"tenant" help:"studio id (claim tenant): the builds this token may see"`
	Subject string        `flag:"subject" help:"developer id (sub)"`
	Scope   string        `flag:"scope" help:"space-separated scopes: builds:read, builds:write"`
	TTL     time.Duration `flag:"ttl" help:"token lifetime"`
}

// buildsUploadFlags is `kumi builds upload`.
type buildsUploadFlags struct {
	URL        string `flag:"url" help:"builds API base URL"`
	Token      string `flag:"token" help:"developer token, or @file to read it from a file"`
	Version    string `flag:"version" help:"version name of the build (default: the first 12 hex digits of its sha256)"`
	Entrypoint string `flag:"entrypoint" help:"server binary inside the archive when it is not <Project>/Binaries/Linux/<Project>Server"`
}

// runBuilds is `kumi builds [serve] | reconcile | token | upload`: the builds API, the Fleet
// reconciler (builds/fleet), a developer token for local
// use, and an upload client (a .tar.gz, a .zip, or a directory packed as .tar.gz on the fly).
func runBuilds(ctx context.Context, log *slog.Logger, args []string) error {
	sub := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "serve":
		cfg := builds.Default()
		fs := flag.NewFlagSet("builds", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
		cfg.JWT.Log = log
		return builds.Run(ctx, log, cfg)
	case "reconcile":
		cfg := fleet.DefaultReconcile()
		fs := flag.NewFlagSet("builds reconcile", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
		return fleet.RunReconciler(ctx, log, cfg)
	case "token":
		cfg := buildsTokenFlags{Key: token.PrivateKeyFile, Issuer: token.DefaultIssuer, Subject: "developer",
			Scope: builds.ScopeWrite, TTL: time.Hour}
		fs := flag.NewFlagSet("builds token", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
		s, err := token.LoadSigner(cfg.Key, cfg.KID, cfg.Issuer)
		if err != nil {
			return err
		}
		raw, err := builds.DeveloperToken(s, cfg.Subject, cfg.Tenant, strings.Fields(cfg.Scope), cfg.TTL)
		if err != nil {
			return err
		}
		fmt.Fprintln(os.Stdout, raw)
		return nil
	case "upload":
		cfg := buildsUploadFlags{URL: "http://127.0.0.1:8090"}
		fs := flag.NewFlagSet("builds upload", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: kumi builds upload [flags] BUILD.tar.gz|BUILD.zip|DIR")
		}
		m, err := uploadBuild(ctx, cfg, fs.Arg(0))
		if err != nil {
			return err
		}
		out, _ := json.MarshalIndent(m, "", "  ")
		fmt.Fprintln(os.Stdout, string(out))
		return nil
	}
	return fmt.Errorf("kumi builds: unknown subcommand %q (serve, token, upload)", sub)
}

// uploadBuild streams path to the builds API (a directory is packed on the fly, never held in
// memory) and returns the stored manifest.
func uploadBuild(ctx context.Context, cfg buildsUploadFlags, path string) (builds.Manifest, error) {
	tok := cfg.Token
	if rest, ok := strings.CutPrefix(tok, "@"); ok {
		b, err := os.ReadFile(rest)
		if err != nil {
			return builds.Manifest{}, err
		}
		tok = strings.TrimSpace(string(b))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return builds.Manifest{}, err
	}
	var body io.Reader
	ctype := "application/gzip"
	switch {
	case fi.IsDir():
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(builds.PackTarGz(pw, path)) }()
		defer pr.Close()
		body = pr
	default:
		f, err := os.Open(path)
		if err != nil {
			return builds.Manifest{}, err
		}
		defer f.Close()
		body = f
		if strings.HasSuffix(path, ".zip") {
			ctype = "application/zip"
		}
	}
	q := url.Values{}
	if cfg.Version != "" {
		q.Set("version", cfg.Version)
	}
	if cfg.Entrypoint != "" {
		q.Set("entrypoint", cfg.Entrypoint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cfg.URL, "/")+"/v1/builds?"+q.Encode(), body)
	if err != nil {
		return builds.Manifest{}, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return builds.Manifest{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return builds.Manifest{}, fmt.Errorf("upload refused: %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	var m builds.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return builds.Manifest{}, fmt.Errorf("upload: answer %q: %w", data, err)
	}
	return m, nil
}
