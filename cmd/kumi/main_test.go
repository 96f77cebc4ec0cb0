package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRealMainUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{nil, 2, "usage: kumi"},
		{[]string{"help"}, 0, "openmatch"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		if code := realMain(tc.args, &out); code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) {
			t.Errorf("realMain(%q) = %d, %q; want %d containing %q", tc.args, code, out.String(), tc.wantCode, tc.wantOut)
		}
	}
}
