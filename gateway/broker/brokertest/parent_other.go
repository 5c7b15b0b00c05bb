//go:build !linux

package brokertest

import "syscall"

// DieWithParent: only Linux can have a child killed with its parent; the
// tests' cleanups stop it elsewhere.
func DieWithParent() *syscall.SysProcAttr { return nil }
