package e2e

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       procStat
		bad        bool
	}{
		{name: "plain", line: "42 (kumi) S 7 42 42 0 -1 4194304 100 0 0 0 150 25 3 2 20 0 12 0 99 0 0",
			want: procStat{ppid: 7, own: 175 * clockTick, cpu: 180 * clockTick}},
		{name: "command with spaces and parens", line: "9 (a (b) c) R 1 9 9 0 -1 0 0 0 0 0 1 2 3 4 20 0",
			want: procStat{ppid: 1, own: 3 * clockTick, cpu: 10 * clockTick}},
		{name: "no command", line: "9 a R 1", bad: true},
		{name: "short", line: "9 (a) R 1 9 9", bad: true},
		{name: "not a number", line: "9 (a) R 1 9 9 0 -1 0 0 0 0 0 x 2 3 4 20 0", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat(tc.line)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseStat = %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStat = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestTreeCPUCountsThisProcess: the tree of this test process includes at least its own CPU,
// which only grows.
func TestTreeCPUCountsThisProcess(t *testing.T) {
	before, own, err := treeCPU(os.Getpid())
	if err != nil || own > before {
		t.Fatalf("treeCPU = %v, own %v, %v: want own <= total", before, own, err)
	}
	self, err := selfCPU()
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in clock ticks, getrusage finer: allow one tick per field.
	if before < self-4*clockTick {
		t.Fatalf("treeCPU = %v, below this process's own %v", before, self)
	}
	for end := self + 3*clockTick; self < end; { // burn a few ticks of CPU
		if self, err = selfCPU(); err != nil {
			t.Fatal(err)
		}
	}
	after, _, err := treeCPU(os.Getpid())
	if err != nil || after < before {
		t.Fatalf("treeCPU went from %v to %v (%v)", before, after, err)
	}
	if _, _, err := treeCPU(-1); err == nil {
		t.Fatal("treeCPU(-1): want an error")
	}
}
