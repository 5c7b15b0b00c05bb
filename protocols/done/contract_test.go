package done_test

import (
	"testing"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/done"
	"github.com/wsgate/wsgate/protocols/done/donetest"
	"github.com/wsgate/wsgate/protocols/protocoltest"
)

// TestContract runs the protocol contract suite on done compiled in; the
// plugins package runs it on the same done served through plugins/sdk.
func TestContract(t *testing.T) {
	protocoltest.Run(t, protocoltest.Setup{
		Name: done.Name, Driver: donetest.Driver{},
		Register: func(t *testing.T, r *protocols.Registry) {
			if err := r.Register(protocoltest.Faulty(done.New(done.DefaultConfig())), "builtin"); err != nil {
				t.Fatal(err)
			}
		},
	})
}
