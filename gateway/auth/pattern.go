package auth

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/wsgate/wsgate/protocols"
)

// CheckDevices validates the Devices of a rule: a device id, or a
// path.Match pattern such as "esp32-*".
func CheckDevices(p string) error {
	if p == "" {
		return errors.New(`empty: name a device id or a pattern such as "esp32-*"`)
	}
	// Since Go 1.16 Match reports a malformed pattern even when the name
	// does not match, so matching "" checks all of it.
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("%q is not a valid pattern", p)
	}
	if !strings.ContainsAny(p, `*?[\`) && !protocols.ValidDeviceID(p) {
		return fmt.Errorf("%q is not a valid device id and would match none", p)
	}
	return nil
}

// matchDevices reports whether device is named by a checked pattern.
func matchDevices(pattern, device string) bool {
	ok, _ := path.Match(pattern, device)
	return ok
}
