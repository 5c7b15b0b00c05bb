// Command ocpp is the OCPP 1.6 example plugin with the contract suite's
// probes (protocoltest.Faulty).
package main

import (
	"github.com/wsgate/wsgate/plugins/examples/ocpp16"
	"github.com/wsgate/wsgate/plugins/sdk"
	"github.com/wsgate/wsgate/protocols/protocoltest"
)

func main() { sdk.Serve(protocoltest.Faulty(ocpp16.Protocol{Log: sdk.Logger()})) }
