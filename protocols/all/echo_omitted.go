//go:build noecho

package all

import "github.com/wsgate/wsgate/protocols/module"

func init() { module.Omit("echo", "noecho") }
