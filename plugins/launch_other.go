//go:build !linux

package plugins

import "os/exec"

// dieWithParent has no kernel support here; the SDK's parent watch ends
// orphaned plugins.
func dieWithParent(*exec.Cmd) {}
