package main

import "github.com/wsgate/wsgate/protocols"

// placeholder until the MQTT bridge is wired in (same session).
type discardSink struct{}

func (discardSink) Deliver(f protocols.Frame) error {
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

var sink discardSink
