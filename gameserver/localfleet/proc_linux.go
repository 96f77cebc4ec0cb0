package localfleet

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the child if the fleet's process dies without reaping it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
