package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kumi-dev/kumi/bench/e2e"
	"github.com/kumi-dev/kumi/bench/spiky"
	"github.com/kumi-dev/kumi/builds"
	"github.com/kumi-dev/kumi/builds/fleet"
	"github.com/kumi-dev/kumi/director"
	"github.com/kumi-dev/kumi/director/agones"
	"github.com/kumi-dev/kumi/frontend"
	"github.com/kumi-dev/kumi/gameserver"
	"github.com/kumi-dev/kumi/gameserver/localfleet"
	"github.com/kumi-dev/kumi/gameserver/wrap"
	"github.com/kumi-dev/kumi/internal/config"
	"github.com/kumi-dev/kumi/internal/token"
	"github.com/kumi-dev/kumi/local"
	"github.com/kumi-dev/kumi/matchfunction"
	"github.com/kumi-dev/kumi/nodeoperator"
	"github.com/kumi-dev/kumi/openmatch"
)

// configDocs lists every command's config struct with its defaults, in the order docs/CONFIG.md
// shows them. Each entry binds the same struct its command binds, so the reference is generated
// from the code (TestConfigDoc keeps docs/CONFIG.md equal to it).
func configDocs() []struct {
	cmd string
	cfg func() any
} {
	return []struct {
		cmd string
		cfg func() any
	}{
		{"kumi local", func() any { c := local.Default(); return &c }},
		{"kumi openmatch", func() any { c := openmatch.Default(); return &c }},
		{"kumi matchfunction", func() any { c := matchfunction.Default(); return &c }},
		{"kumi frontend", func() any { c := frontend.Default(); return &c }},
		{"kumi director", func() any {
			return &directorFlags{Director: director.Default(), Backends: []string{"local"}, Fleet: localfleet.Default(), Agones: agones.DefaultConfig()}
		}},
		{"kumi gameserver", func() any { c := gameserver.Default(); return &c }},
		{"kumi gameserver wrap", func() any { c := wrap.Default(); return &c }},
		{"kumi builds", func() any { c := builds.Default(); return &c }},
		{"kumi builds reconcile", func() any { c := fleet.DefaultReconcile(); return &c }},
		{"kumi token keygen", func() any { c := token.DefaultKeygenConfig(); return &c }},
		{"kumi token issue", func() any { c := token.DefaultIssueConfig(); return &c }},
		{"kumi token verify", func() any { return &tokenVerifyFlags{Verifier: token.DefaultVerifierConfig()} }},
		{"kumi bench spiky", func() any { c := spiky.Default(); c.Out = "out/spiky"; return &c }},
		{"kumi bench e2e", func() any { c := e2e.Default(); return &c }},
		{"kumi nodeoperator", func() any { c := nodeoperator.Default(); return &c }},
	}
}

// writeConfigDoc renders the configuration reference as markdown.
func writeConfigDoc(w io.Writer) error {
	fmt.Fprintln(w, "# Configuration reference")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Generated from the components' config structs (`go test ./cmd/kumi -run TestConfigDoc -update`);")
	fmt.Fprintln(w, "every setting is a flag of its command, and each component logs its effective settings at start.")
	for _, d := range configDocs() {
		fs := flag.NewFlagSet(d.cmd, flag.ContinueOnError)
		if err := config.Bind(fs, "", d.cfg()); err != nil {
			return fmt.Errorf("%s: %w", d.cmd, err)
		}
		fmt.Fprintf(w, "\n## %s\n\n| flag | default | meaning |\n|---|---|---|\n", d.cmd)
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = "—"
			} else {
				def = "`" + def + "`"
			}
			fmt.Fprintf(w, "| `-%s` | %s | %s |\n", f.Name, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
		})
	}
	return nil
}
