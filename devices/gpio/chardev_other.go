//go:build !linux || mips || mipsle || mips64 || mips64le || ppc64 || ppc64le || sparc64

package gpio

import (
	"errors"
	"runtime"
)

// openChip fails: the GPIO character device is Linux's, and its ioctl
// numbers are encoded here for arm, arm64, x86 and riscv only.
func openChip(path string) (chip, error) {
	return nil, errors.New("GPIO chip " + path + ": the GPIO character device is not supported on " + runtime.GOOS + "/" + runtime.GOARCH)
}
