// Command hostile is the "server" of kumi's sandbox test: a build that tries what a malicious
// upload would. It takes -port= like Unreal, binds it, then reports over stdout, one line each:
// READ <path> <ok|denied: err> for every -read path, DIAL <addr> <ok|denied: err> for every -dial
// address, FORKS <n> after forking itself until the kernel refuses (or -forks), and ORPHAN <pid>
// after starting a child that outlives it; then it keeps running so the test can stop the wrapper.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

func main() {
	port := flag.Int("port", 0, "UDP port")
	flag.Bool("log", false, "ignored")
	reads := flag.String("read", "", "comma-separated files to try to read")
	dials := flag.String("dial", "", "comma-separated TCP addresses to try to reach")
	forks := flag.Int("forks", 0, "children to try to start (fork bomb)")
	child := flag.Bool("child", false, "internal: be a child that sleeps")
	flag.Parse()
	if *child {
		time.Sleep(time.Hour)
		return
	}
	pc, err := net.ListenPacket("udp", fmt.Sprintf("0.0.0.0:%d", *port))
	if err != nil {
		fmt.Printf("BIND %v\n", err)
		os.Exit(1)
	}
	defer pc.Close()
	fmt.Println("BOUND")
	for _, p := range strings.Split(*reads, ",") {
		if p == "" {
			continue
		}
		if _, err := os.ReadFile(p); err != nil {
			fmt.Printf("READ %s denied: %v\n", p, err)
		} else {
			fmt.Printf("READ %s ok\n", p)
		}
	}
	for _, a := range strings.Split(*dials, ",") {
		if a == "" {
			continue
		}
		c, err := net.DialTimeout("tcp", a, 3*time.Second)
		if err != nil {
			fmt.Printf("DIAL %s denied: %v\n", a, err)
		} else {
			c.Close()
			fmt.Printf("DIAL %s ok\n", a)
		}
	}
	// At the process limit the Go runtime cannot start another thread and dies (exit 2): that
	// would end the sandbox early, which is not what the test looks at. So park spare threads
	// first (idle threads are reused), and after the bomb free some room by ending a few children.
	spareThreads(16)
	var kids []*exec.Cmd
	for range *forks {
		cmd := exec.Command("/proc/self/exe", "-child")
		if err := cmd.Start(); err != nil {
			fmt.Printf("FORKERR %v\n", err)
			break
		}
		kids = append(kids, cmd)
	}
	n := len(kids)
	for _, k := range kids[:min(8, len(kids))] {
		_ = k.Process.Kill()
		_ = k.Wait()
	}
	fmt.Printf("FORKS %d\n", n)
	fmt.Println("DONE")
	for { // a timer, unlike select {}, never reads as a deadlock to the runtime
		time.Sleep(time.Hour)
	}
}

// spareThreads makes the runtime start n OS threads and leaves them idle for later reuse.
func spareThreads(n int) {
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	var done sync.WaitGroup
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread() // one goroutine per thread while all are held
			started.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	started.Wait()
	release.Done()
	done.Wait()
}
