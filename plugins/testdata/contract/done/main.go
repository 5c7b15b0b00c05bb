// Command done is done, served as a plugin, with the contract suite's
// probes (protocoltest.Faulty): the same protocol the gateway compiles in.
package main

import (
	"github.com/wsgate/wsgate/plugins/sdk"
	"github.com/wsgate/wsgate/protocols/done"
	"github.com/wsgate/wsgate/protocols/protocoltest"
)

func main() { sdk.Serve(protocoltest.Faulty(done.New(done.DefaultConfig()))) }
