//go:build !noship

package all

import _ "github.com/wsgate/wsgate/protocols/ship" // registers "ship"
