//go:build nodone

package all

import "github.com/wsgate/wsgate/protocols/module"

func init() { module.Omit("done", "nodone") }
