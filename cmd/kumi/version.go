package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
)

// version is stamped at build time (install/docker/Dockerfile, skaffold's ko artifact):
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/kumi
//
// It is a variable only because the linker can set nothing else; nothing assigns it at run time.
var version = ""

// runVersion is `kumi version`: the stamped version, or what the Go toolchain recorded when the
// binary was built without a stamp (go install module@version, or a VCS checkout).
func runVersion(_ context.Context, _ *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	info, _ := debug.ReadBuildInfo()
	return printVersion(os.Stdout, version, info)
}

// printVersion writes one line: the stamped version when there is one, else the module version
// and VCS revision from the build info, else "devel".
func printVersion(w io.Writer, stamped string, info *debug.BuildInfo) error {
	_, err := fmt.Fprintln(w, "kumi "+versionString(stamped, info))
	return err
}

func versionString(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return "devel"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev != "" && v == "devel" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return v + "+" + rev + modified
	}
	return v
}
