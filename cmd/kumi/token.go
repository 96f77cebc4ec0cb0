package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/controlauth"
	"github.com/kumi-dev/kumi/internal/token"
)

// runToken is `kumi token keygen|issue|verify|secret`: local key management, dev tokens and the
// control API's shared secret.
func runToken(ctx context.Context, log *slog.Logger, args []string) error {
	usage := errors.New("usage: kumi token keygen|issue|verify|secret [flags]  (kumi token <sub> -h lists flags)")
	if len(args) == 0 {
		return usage
	}
	switch args[0] {
	case "keygen":
		cfg := token.DefaultKeygenConfig()
		fs := flag.NewFlagSet("token keygen", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		s, files, err := token.Keygen(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "kid %s (%s)\nwrote %s\nverify with: --jwt-jwks-file %s  or  --jwt-public-keys %s=%s  --jwt-issuer %s\n",
			s.KID(), s.Alg(), strings.Join(files, ", "), files[2], s.KID(), files[1], cfg.Issuer)
		return nil
	case "secret":
		cfg := tokenSecretFlags{}
		fs := flag.NewFlagSet("token secret", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := controlauth.WriteSecret(cfg.Out, cfg.Force); err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "wrote %s (mode 0600): pass it as the director's --control-secret-file and each game server's --director-secret-file\n", cfg.Out)
		return nil
	case "issue":
		cfg := token.DefaultIssueConfig()
		fs := flag.NewFlagSet("token issue", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		raw, err := token.Issue(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(os.Stdout, raw)
		return nil
	case "verify":
		cfg := tokenVerifyFlags{Verifier: token.DefaultVerifierConfig()}
		fs := flag.NewFlagSet("token verify", flag.ContinueOnError)
		if err := config.Bind(fs, "", &cfg); err != nil {
			return err
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: kumi token verify [flags] TOKEN")
		}
		cfg.Verifier.Log = log
		v, err := token.NewVerifier(ctx, cfg.Verifier)
		if err != nil {
			return err
		}
		if cfg.Server != "" {
			c, err := v.VerifyServerToken(fs.Arg(0), cfg.Server)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stdout, "valid server token: %+v\n", c)
			return nil
		}
		c, err := v.VerifyPlayerToken(fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "valid player token: %+v\n", c)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q; %w", args[0], usage)
}

// tokenVerifyFlags is every setting of `kumi token verify`: the verifier's, plus which kind of
// token to check.
type tokenVerifyFlags struct {
	Verifier token.VerifierConfig
	Server   string `flag:"server" help:"verify as a server token for this game server (default: player token)"`
}

// tokenSecretFlags is every setting of `kumi token secret`.
type tokenSecretFlags struct {
	Out   string `flag:"out" help:"file to write the new control secret to (mode 0600)"`
	Force bool   `flag:"force" help:"overwrite an existing file"`
}
