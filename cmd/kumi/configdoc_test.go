package main

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/CONFIG.md from the config structs")

func TestConfigDoc(t *testing.T) {
	var buf bytes.Buffer
	if err := writeConfigDoc(&buf); err != nil {
		t.Fatal(err)
	}
	const path = "../../docs/CONFIG.md"
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, buf.Bytes()) {
		t.Fatal("docs/CONFIG.md is stale: run go test ./cmd/kumi -run TestConfigDoc -update and commit it")
	}
}
