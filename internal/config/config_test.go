package config

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Port int `flag:"port" help:"the port"`
}

type sample struct {
	Addr  string        `flag:"addr" help:"listen address"`
	Wait  time.Duration `flag:"wait" help:"how long"`
	On    bool          `flag:"on" help:"switch"`
	Seed  uint64        `flag:"seed" help:"seed"`
	Ratio float64       `flag:"ratio" help:"share"`
	Names []string      `flag:"names" help:"names"`
	Key   string        `flag:"key" help:"secret key" secret:"true"`
	Inner inner         `prefix:"in."`
	//lint:ignore U1000 present so the test shows Bind skips unexported fields
	private int
}

func TestBindDefaultsAndOverrides(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want sample
	}{
		{"defaults kept", nil, sample{Addr: ":1", Wait: time.Second, Names: []string{"a"}, Inner: inner{Port: 7}}},
		{"all overridden", []string{"-addr=:2", "-wait=3s", "-on", "-ratio=0.5", "-names=x, y", "-key=k", "-in.port=9", "-seed=5"},
			sample{Addr: ":2", Wait: 3 * time.Second, On: true, Ratio: 0.5, Names: []string{"x", "y"}, Key: "k", Seed: 5, Inner: inner{Port: 9}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sample{Addr: ":1", Wait: time.Second, Names: []string{"a"}, Inner: inner{Port: 7}}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			if err := Bind(fs, "", &cfg); err != nil {
				t.Fatal(err)
			}
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if cfg.Addr != tc.want.Addr || cfg.Wait != tc.want.Wait || cfg.On != tc.want.On || cfg.Ratio != tc.want.Ratio ||
				strings.Join(cfg.Names, ",") != strings.Join(tc.want.Names, ",") || cfg.Key != tc.want.Key || cfg.Seed != tc.want.Seed || cfg.Inner != tc.want.Inner {
				t.Fatalf("got %+v want %+v", cfg, tc.want)
			}
		})
	}
}

func TestBindRejectsMissingHelp(t *testing.T) {
	var bad struct {
		X int `flag:"x"`
	}
	if err := Bind(flag.NewFlagSet("t", flag.ContinueOnError), "", &bad); err == nil || !strings.Contains(err.Error(), "no help tag") {
		t.Fatalf("want missing-help error, got %v", err)
	}
	if err := Bind(flag.NewFlagSet("t", flag.ContinueOnError), "", bad); err == nil {
		t.Fatal("want error for non-pointer")
	}
}

func TestLogHidesSecrets(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	Log(context.Background(), log, "x", &sample{Addr: ":5", Key: "hunter2", Wait: time.Second, Inner: inner{Port: 3}})
	out := buf.String()
	for _, want := range []string{"config_of=x", "addr=:5", "key=<set>", "wait=1s", "in.port=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("secret leaked: %s", out)
	}
}
