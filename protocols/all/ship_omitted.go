//go:build noship

package all

import "github.com/wsgate/wsgate/protocols/module"

func init() { module.Omit("ship", "noship") }
