package install_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd, args string
}

// parseDockerfile splits a Dockerfile into instructions: comments and blank lines dropped,
// backslash continuations joined. (No Docker engine here: the image cannot be built in the tests,
// so its definition is checked instead.)
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s ends inside a continued instruction", path)
	}
	return out
}

// TestDockerfile checks the image definition: a Go build stage with CGO off, -trimpath and the
// version stamped into main.version, and a final distroless nonroot stage that runs kumi directly.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "docker/Dockerfile")
	var froms []string
	var build string
	lastStage := -1
	for i, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
			lastStage = i
		case "RUN":
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		}
	}
	if len(froms) != 2 {
		t.Fatalf("want a build stage and a runtime stage, got FROM %v", froms)
	}
	if !regexp.MustCompile(`golang:\$\{GO_VERSION\}`).MatchString(froms[0]) || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("build stage %q: want golang:${GO_VERSION} AS build", froms[0])
	}
	var goVersion string
	for _, in := range ins {
		if in.cmd == "ARG" && strings.HasPrefix(in.args, "GO_VERSION=") {
			goVersion = strings.TrimPrefix(in.args, "GO_VERSION=")
		}
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(gomod); m == nil || !strings.HasPrefix(goVersion, string(m[1])[:4]) {
		t.Errorf("GO_VERSION %q does not match go.mod's go line %q", goVersion, m)
	}
	if froms[1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime base %q, want gcr.io/distroless/static-debian12:nonroot (static: no libc, no shell)", froms[1])
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/kumi"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build %q lacks %s", build, want)
		}
	}
	final := ins[lastStage:]
	var user, entrypoint string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "RUN":
			t.Errorf("RUN in the runtime stage (distroless has no shell): %s", in.args)
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (distroless nonroot; the chart's runAsUser)", user)
	}
	if entrypoint != `["/usr/local/bin/kumi"]` {
		t.Errorf("ENTRYPOINT %s, want the exec form [\"/usr/local/bin/kumi\"] (no shell to run a string form)", entrypoint)
	}
	copied := slices.ContainsFunc(final, func(in instruction) bool {
		return in.cmd == "COPY" && strings.HasPrefix(in.args, "--from=build ") && strings.HasSuffix(in.args, " /usr/local/bin/kumi")
	})
	if !copied {
		t.Error("runtime stage does not copy the binary from the build stage")
	}
}
