//go:build !nogpio

package all

import _ "github.com/wsgate/wsgate/devices/gpio"
