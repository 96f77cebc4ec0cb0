package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/PID/stat's CPU times: USER_HZ, fixed at 100 by Linux's ABI for
// every architecture Go runs on (sysconf(_SC_CLK_TCK) would need cgo).
const clockTick = 10 * time.Millisecond

// selfCPU is the CPU (user + system) this process has used so far: the load generator's.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("e2e: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// procStat is the part of /proc/PID/stat treeCPU needs.
type procStat struct {
	ppid int
	// own is utime + stime: the process's own CPU.
	own time.Duration
	// cpu is utime + stime + cutime + cstime: the process's own CPU and that of its children it
	// has reaped, so a game server that exits during a run still counts (in its parent's share).
	cpu time.Duration
}

// parseStat parses one /proc/PID/stat line. The command (field 2) is in parentheses and may hold
// spaces and parentheses itself, so the fields are counted from the last ')'.
func parseStat(line string) (procStat, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("e2e: stat %q: no command", line)
	}
	// After ')': state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(line[i+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("e2e: stat %q: %d fields after the command, want >= 15", line, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("e2e: stat ppid: %w", err)
	}
	var ticks [4]int64
	for i, s := range f[11:15] {
		if ticks[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return procStat{}, fmt.Errorf("e2e: stat cpu field: %w", err)
		}
	}
	own := time.Duration(ticks[0]+ticks[1]) * clockTick
	return procStat{ppid: ppid, own: own, cpu: own + time.Duration(ticks[2]+ticks[3])*clockTick}, nil
}

// treeCPU is the CPU used so far by pid and every live descendant (the product: `kumi local` and
// its game-server processes), read from /proc; exited descendants count through their parents'
// cutime/cstime once reaped. root is pid's own share (for `kumi local`: every component but the
// game servers).
func treeCPU(pid int) (total, root time.Duration, err error) {
	stats := map[int]procStat{}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, 0, fmt.Errorf("e2e: list /proc: %w", err)
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue // exited since the listing
		}
		st, err := parseStat(string(b))
		if err != nil {
			return 0, 0, err
		}
		n, _ := strconv.Atoi(filepath.Base(d))
		stats[n] = st
	}
	st, ok := stats[pid]
	if !ok {
		return 0, 0, fmt.Errorf("e2e: product process %d: not running", pid)
	}
	children := map[int][]int{}
	for n, st := range stats {
		children[st.ppid] = append(children[st.ppid], n)
	}
	total = st.cpu
	queue := children[pid]
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		total += stats[n].cpu
		queue = append(queue, children[n]...)
	}
	return total, st.own, nil
}
