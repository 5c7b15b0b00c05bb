//go:build !noecho

package all

import _ "github.com/wsgate/wsgate/protocols/echo" // registers "echo"
