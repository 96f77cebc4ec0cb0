package localfleet

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel SIGKILL the child if the fleet's process dies without reaping
// it. Linux ties the signal to the thread that forked, not the process; the Go runtime keeps its
// threads alive except under runtime.LockOSThread, which the fleet never uses, so this holds in
// practice and a normal stop still terminates and reaps every child itself.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
