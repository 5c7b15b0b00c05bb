package ocpp16_test

import (
	"testing"

	"github.com/wsgate/wsgate/plugins/examples/ocpp16"
	"github.com/wsgate/wsgate/plugins/examples/ocpp16/ocpptest"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/protocoltest"
)

// TestContract runs the protocol contract suite on the example compiled
// in; the plugins package runs it on the plugin binary.
func TestContract(t *testing.T) {
	protocoltest.Run(t, protocoltest.Setup{
		Name: "ocpp1.6", Driver: ocpptest.Driver{},
		Register: func(t *testing.T, r *protocols.Registry) {
			if err := r.Register(protocoltest.Faulty(ocpp16.Protocol{}), "builtin"); err != nil {
				t.Fatal(err)
			}
		},
	})
}
