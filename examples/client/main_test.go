package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kumi-dev/kumi/internal/teststack"
)

// TestCLIEndToEnd runs the command with two players of one chat group against the real stack and
// checks what it prints.
func TestCLIEndToEnd(t *testing.T) {
	st := teststack.Start(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{
		"-frontend", st.Frontend.GRPCAddr(), "-key", st.KeyFile, "-player", "cli",
		"-players", "2", "-talk", "500ms", "-attrs", "mode=voice,chat_group=cli-room",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^player cli-1$`),
		regexp.MustCompile(`(?m)^player cli-2$`),
		regexp.MustCompile(`(?m)^leg 1 \(assignment\): session s-cli-room on 127\.0\.0\.1:\d+ member \d+$`),
		regexp.MustCompile(`(?m)^  ticket \S+ -> assignment  \S+$`),
		regexp.MustCompile(`(?m)^  assignment -> ACCEPT      \S+$`),
		regexp.MustCompile(`(?m)^  ACCEPT -> first frame     \S+$`),
		regexp.MustCompile(`(?m)^summary of 2 players \(0 failed\): 0 moves, 0 reconnects, frames sent \d+ received \d+$`),
		regexp.MustCompile(`(?m)^  ticket -> assignment\s+p50 \S+ p99 \S+ max \S+ \(n=2\)$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %s:\n%s", want, text)
		}
	}
}

func TestShort(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{1234567 * time.Nanosecond, 1230 * time.Microsecond},
		{45678 * time.Microsecond, 45700 * time.Microsecond},
		{1234567891 * time.Nanosecond, 1230 * time.Millisecond},
		{789456 * time.Nanosecond, 789 * time.Microsecond},
		{0, 0},
	} {
		if got := short(tc.in); got != tc.want {
			t.Errorf("short(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCLIBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-players", "0"}, 2, "-players 0 must be at least 1"},
		{[]string{"-attrs", "mode"}, 2, `attribute "mode": want name=value`},
		{[]string{"-frontend", "", "-key", "x"}, 1, "-frontend is required"},
		{[]string{"-h"}, 0, "-frontend-http"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), tt.args, &out, &errOut); code != tt.code || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want %q)", tt.args, code, tt.code, errOut.String(), tt.want)
		}
	}
}
