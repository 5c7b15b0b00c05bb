// Command wsgate-ocpp16 is the OCPP-J 1.6 example protocol as a wsgate
// plugin binary.
//
// wsgate passes plugins no configuration, but they inherit its
// environment: WSGATE_OCPP16_VENDORS lists, comma-separated, the
// DataTransfer vendorIds that something behind MQTT implements.
package main

import (
	"os"
	"strings"

	"github.com/wsgate/wsgate/plugins/examples/ocpp16"
	"github.com/wsgate/wsgate/plugins/sdk"
)

func main() {
	sdk.Serve(ocpp16.Protocol{
		DataTransferVendors: vendors(os.Getenv("WSGATE_OCPP16_VENDORS")),
		Log:                 sdk.Logger(),
	})
}

func vendors(list string) []string {
	var ids []string
	for id := range strings.SplitSeq(list, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
