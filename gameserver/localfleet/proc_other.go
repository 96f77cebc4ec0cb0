//go:build !linux

package localfleet

import "os/exec"

// setDeathSignal has no portable equivalent off Linux; the fleet still kills children on ctx end.
func setDeathSignal(*exec.Cmd) {}
