// Command wsgate-ocpp16 is the OCPP-J 1.6 example protocol as a wsgate
// plugin binary.
package main

import (
	"github.com/wsgate/wsgate/plugins/examples/ocpp16"
	"github.com/wsgate/wsgate/plugins/sdk"
)

func main() { sdk.Serve(ocpp16.Protocol{}) }
