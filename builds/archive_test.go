package builds

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostileArchives is the hostile-archive suite: every archive is refused with an error naming
// the entry and the limit, and leaves no object in the bucket and no spool file behind.
func TestHostileArchives(t *testing.T) {
	lim := testLimits()
	many := []ent{server("Game")}
	for i := range lim.MaxEntries {
		many = append(many, file(fmt.Sprintf("Game/Content/f%04d", i), []byte("x")))
	}
	cases := []struct {
		name   string
		format string
		data   func(t *testing.T) []byte
		want   []string // substrings of the error
		large  bool     // ErrTooLarge expected
	}{
		{"tar bomb", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/Content/bomb.pak", typ: tar.TypeReg, mode: 0o644, size: 30 << 20})
		}, []string{`"Game/Content/bomb.pak"`, "compression ratio", "max-ratio"}, true},
		{"zip bomb", FormatZip, func(t *testing.T) []byte {
			return zipOf(t, server("Game"), ent{name: "Game/Content/bomb.pak", typ: tar.TypeReg, size: 30 << 20})
		}, []string{`"Game/Content/bomb.pak"`, "compression ratio", "max-ratio"}, true},
		{"uncompressed size", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/big", typ: tar.TypeReg, size: 33 << 20})
		}, []string{`"Game/big"`, "max-uncompressed-bytes"}, true},
		{"archive size", FormatTarGz, func(t *testing.T) []byte {
			noise := make([]byte, 9<<20)
			_, _ = rand.Read(noise)
			return tarGz(t, server("Game"), file("Game/noise", noise))
		}, []string{"max-archive-bytes"}, true},
		{"entry count", FormatTarGz, func(t *testing.T) []byte { return tarGz(t, many...) },
			[]string{"more than 500 entries", "max-entries"}, true},
		{"entry count zip", FormatZip, func(t *testing.T) []byte { return zipOf(t, many...) },
			[]string{"501 entries", "max-entries"}, true},
		{"dotdot", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), file("Game/../../etc/cron.d/x", []byte("x")))
		}, []string{`"Game/../../etc/cron.d/x"`, "path traversal"}, false},
		{"dotdot zip", FormatZip, func(t *testing.T) []byte {
			return zipOf(t, server("Game"), file("../evil", []byte("x")))
		}, []string{`"../evil"`, "path traversal"}, false},
		{"absolute", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), file("/etc/passwd", []byte("x")))
		}, []string{`"/etc/passwd"`, "absolute path"}, false},
		{"symlink escape", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/link", typ: tar.TypeSymlink, link: "../../etc"})
		}, []string{`"Game/link"`, "escapes the build root"}, false},
		{"symlink absolute", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/link", typ: tar.TypeSymlink, link: "/etc/shadow"})
		}, []string{`"Game/link"`, "absolute target"}, false},
		{"symlink escape zip", FormatZip, func(t *testing.T) []byte {
			return zipOf(t, server("Game"), ent{name: "Game/link", typ: tar.TypeSymlink, link: "../../../root"})
		}, []string{`"Game/link"`, "escapes the build root"}, false},
		{"write through symlink", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/d", typ: tar.TypeSymlink, link: "Binaries"}, file("Game/d/x", []byte("x")))
		}, []string{`"Game/d/x"`, "not a directory"}, false},
		{"hardlink escape", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/h", typ: tar.TypeLink, link: "../../etc/shadow"})
		}, []string{`"Game/h"`, "hardlink"}, false},
		{"char device", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/null", typ: tar.TypeChar})
		}, []string{`"Game/null"`, "device or fifo"}, false},
		{"fifo", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), ent{name: "Game/pipe", typ: tar.TypeFifo})
		}, []string{`"Game/pipe"`, "device or fifo"}, false},
		{"fifo zip", FormatZip, func(t *testing.T) []byte {
			return zipOf(t, server("Game"), ent{name: "Game/pipe", typ: tar.TypeFifo})
		}, []string{`"Game/pipe"`, "fifo"}, false},
		{"duplicate", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, server("Game"), file("Game/a", nil), file("Game/a", nil))
		}, []string{`"Game/a"`, "twice"}, false},
		{"not elf", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, file("Game/Binaries/Linux/GameServer", []byte("#!/bin/sh\nrm -rf /\n")))
		}, []string{`"Game/Binaries/Linux/GameServer"`, "not an ELF"}, false},
		{"wrong arch", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, file("Game/Binaries/Linux/GameServer", fakeELF(elf.EM_AARCH64)))
		}, []string{`"Game/Binaries/Linux/GameServer"`, "EM_AARCH64", "x86-64"}, false},
		{"wrong arch zip", FormatZip, func(t *testing.T) []byte {
			return zipOf(t, file("Game/Binaries/Linux/GameServer", fakeELF(elf.EM_386)))
		}, []string{`"Game/Binaries/Linux/GameServer"`, "x86-64"}, false},
		{"no server", FormatTarGz, func(t *testing.T) []byte {
			return tarGz(t, file("Game/Binaries/Win64/GameServer.exe", []byte("MZ")))
		}, []string{"<Project>/Binaries/Linux/<Project>Server"}, false},
		{"truncated", FormatTarGz, func(t *testing.T) []byte {
			b := tarGz(t, server("Game"), file("Game/Content/a.pak", bytes.Repeat([]byte("kumi"), 1<<14)))
			return b[:len(b)/2]
		}, []string{"truncated or corrupt"}, false},
		{"truncated zip", FormatZip, func(t *testing.T) []byte {
			b := zipOf(t, server("Game"))
			return b[:len(b)-10]
		}, []string{"not a zip archive"}, false},
		{"not gzip", FormatTarGz, func(t *testing.T) []byte { return []byte("PK\x03\x04 a zip sent as tar.gz") },
			[]string{"not a gzip stream"}, false},
		{"empty", FormatTarGz, func(t *testing.T) []byte { return tarGz(t) }, []string{"no entries"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, _, spool := newTestStore(t)
			_, _, err := st.Upload(context.Background(), "studio-a", bytes.NewReader(tc.data(t)), UploadOptions{Format: tc.format, Version: "1"})
			if err == nil {
				t.Fatal("accepted a hostile archive")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if got := errors.Is(err, ErrTooLarge); got != tc.large {
				t.Errorf("errors.Is(ErrTooLarge) = %v, want %v (%v)", got, tc.large, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if k := keys(t, st.Bucket()); len(k) > 0 {
				t.Errorf("refusal left objects behind: %v", k)
			}
			if left, _ := os.ReadDir(spool); len(left) > 0 {
				t.Errorf("refusal left spool files behind: %v", left)
			}
		})
	}
}

// TestUnpackStripsAndStaysInside unpacks a valid build with setuid bits, symlinks and hardlinks:
// special bits are stripped, links resolve inside the root.
func TestUnpackStripsAndStaysInside(t *testing.T) {
	for _, format := range []string{FormatTarGz, FormatZip} {
		t.Run(format, func(t *testing.T) {
			srv := server("Game")
			srv.mode = 0o6777 // setuid + setgid + world writable
			ents := []ent{
				{name: "Game/", typ: tar.TypeDir, mode: 0o755},
				srv,
				file("Game/Content/a.pak", []byte("pak")),
				{name: "Game/Content/latest", typ: tar.TypeSymlink, link: "a.pak"},
			}
			data := tarGz(t, append(ents, ent{name: "Game/Content/hard", typ: tar.TypeLink, link: "Game/Content/a.pak"})...)
			if format == FormatZip {
				data = zipOf(t, ents...)
			}
			sum, err := inspect(format, data)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Project != "Game" || sum.Entrypoint != "Game/Binaries/Linux/GameServer" {
				t.Fatalf("summary %+v", sum)
			}
			f := filepath.Join(t.TempDir(), "a")
			if err := os.WriteFile(f, data, 0o600); err != nil {
				t.Fatal(err)
			}
			fh, _ := os.Open(f)
			defer fh.Close()
			dir := t.TempDir()
			if err := Unpack(format, fh, int64(len(data)), testLimits(), dir); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, "Game/Binaries/Linux/GameServer"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("mode %v: setuid/setgid/group-write not stripped", fi.Mode())
			}
			got, err := os.ReadFile(filepath.Join(dir, "Game/Content/latest"))
			if err != nil || string(got) != "pak" {
				t.Errorf("symlink read %q, %v", got, err)
			}
		})
	}
}

func inspect(format string, data []byte) (Summary, error) {
	if format == FormatZip {
		return InspectZip(bytes.NewReader(data), int64(len(data)), testLimits(), "", "")
	}
	return InspectTarGz(bytes.NewReader(data), testLimits(), "", "")
}

// TestDeclaredEntrypoint accepts a non-Unreal layout when the entrypoint is declared, and refuses
// a declared entrypoint that escapes or is missing.
func TestDeclaredEntrypoint(t *testing.T) {
	data := tarGz(t, file("srv/run", fakeELF(elf.EM_X86_64)))
	sum, err := InspectTarGz(bytes.NewReader(data), testLimits(), "srv/run", "")
	if err != nil || sum.Project != "srv" || sum.Entrypoint != "srv/run" {
		t.Fatalf("declared entrypoint: %+v, %v", sum, err)
	}
	for _, ep := range []string{"../srv/run", "/srv/run", "srv/missing"} {
		if _, err := InspectTarGz(bytes.NewReader(data), testLimits(), ep, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("entrypoint %q: err %v, want ErrInvalid", ep, err)
		}
	}
}
