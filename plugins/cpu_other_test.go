//go:build !linux

package plugins

import (
	"errors"
	"time"
)

func processCPU(int) (time.Duration, error) {
	return 0, errors.New("CPU time is read on Linux only")
}
