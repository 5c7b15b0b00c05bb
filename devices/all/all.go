// Package all registers every built-in local device driver. A slim build
// leaves one out with its build tag, e.g. `go build -tags nogpio`.
package all

import (
	_ "github.com/wsgate/wsgate/devices/exec"
	_ "github.com/wsgate/wsgate/devices/serial"
	_ "github.com/wsgate/wsgate/devices/sysfs"
)
