package plugins

import (
	"testing"

	"github.com/wsgate/wsgate/plugins/examples/ocpp16/ocpptest"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/done/donetest"
	"github.com/wsgate/wsgate/protocols/protocoltest"
)

// TestContract runs the protocol contract suite through plugins/sdk: done
// and the OCPP example, each as a plugin process, must behave as they do
// compiled in (their own packages run the same suite in process).
func TestContract(t *testing.T) {
	for _, tt := range []struct {
		name, binary, protocol string
		driver                 protocoltest.Driver
	}{
		{"done", contractDone, "done", donetest.Driver{}},
		{"ocpp16", contractOCPP, "ocpp1.6", ocpptest.Driver{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			protocoltest.Run(t, protocoltest.Setup{
				Name: tt.protocol, Driver: tt.driver,
				Register: func(t *testing.T, r *protocols.Registry) {
					h := NewHost(Options{Registry: r, Log: quietLog()})
					t.Cleanup(h.Close)
					if err := h.Start([]Spec{spec(t, tt.binary)}); err != nil {
						t.Fatal(err)
					}
				},
			})
		})
	}
}
