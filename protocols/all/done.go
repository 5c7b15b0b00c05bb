//go:build !nodone

package all

import _ "github.com/wsgate/wsgate/protocols/done" // registers "done"
