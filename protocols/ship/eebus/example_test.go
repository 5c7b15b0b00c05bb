package eebus_test

import (
	"fmt"

	"github.com/wsgate/wsgate/protocols/ship/eebus"
)

func ExampleToEEBus() {
	eebusJSON, _ := eebus.ToEEBus([]byte(`{"connectionHello":{"phase":"ready","waiting":60000}}`))
	fmt.Println(string(eebusJSON))
	plain, _ := eebus.FromEEBus([]byte(`{"accessMethodsRequest":[]}`))
	fmt.Println(string(plain))
	// Output:
	// {"connectionHello":[{"phase":"ready"},{"waiting":60000}]}
	// {"accessMethodsRequest":{}}
}

func ExampleMarshal() {
	waiting := uint32(60000)
	msg, _ := eebus.EncodeMessage(eebus.ConnectionHello{Phase: eebus.HelloReady, Waiting: &waiting})
	fmt.Printf("%d %s\n", msg[0], msg[1:])
	// Output: 1 {"connectionHello":[{"phase":"ready"},{"waiting":60000}]}
}

func ExampleUnmarshal() {
	// A message as it comes off the WebSocket, with the NUL some devices add.
	frame := []byte("\x01{\"messageProtocolHandshake\":[{\"handshakeType\":\"announceMax\"}," +
		"{\"version\":[{\"major\":1},{\"minor\":0}]},{\"formats\":[{\"format\":[\"JSON-UTF8\"]}]}]}\x00")
	_, body, err := eebus.Decode(frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	name, _ := eebus.Peek(body)
	m, ok := eebus.NewMessage(name)
	if !ok {
		fmt.Println("not a SHIP message:", name)
		return
	}
	if err := eebus.Unmarshal(body, m); err != nil {
		fmt.Println(err)
		return
	}
	hs := m.(*eebus.MessageProtocolHandshake)
	fmt.Println(hs.HandshakeType, hs.Version.Major, hs.Version.Minor, hs.Formats.Format)
	// Output: announceMax 1 0 [JSON-UTF8]
}
