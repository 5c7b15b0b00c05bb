// Command done-remote is the done protocol served as a plugin under the
// name "done-remote": make bench runs the same devices through done
// compiled in and through this process, side by side, to price the
// plugin boundary end to end.
package main

import (
	"github.com/wsgate/wsgate/plugins/sdk"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/done"
)

// renamed is a protocol under another name: the gateway reserves "done"
// for the built-in one.
type renamed struct{ protocols.Protocol }

func (renamed) Name() string { return "done-remote" }

func main() { sdk.Serve(renamed{done.New(done.DefaultConfig())}) }
