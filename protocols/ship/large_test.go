package ship_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship/eebus"
	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
)

// TestShipLargeFragmentedMessages: SPINE messages of 64 and 300 KiB, sent
// as many WebSocket frames (gorilla cuts a message into frames of its 4 KiB
// write buffer), reach the router whole, and a datagram as large goes back
// to the peer.
func TestShipLargeFragmentedMessages(t *testing.T) {
	t.Parallel()
	a := startNode(t, "A", nodeOptions{autoAccept: true, machine: quick, maxMessage: 1 << 20})
	w := dialWire(t, newIdentity(t, "scripted"), a)
	w.handshakeTo(clientStages(machine.DefaultHelloInit, a.id.SHIPID, "scripted"), dataExchange)

	for i, size := range []int{64 << 10, 300 << 10} {
		description := strings.Repeat("x", size)
		counter := fmt.Sprintf(`{"msgCounter":%d}`, i+1)
		payload := `{"datagram":[{"header":[` + counter + `]},{"payload":[{"cmd":[[{"description":"` + description + `"}]]}]}]}`
		msg := shiptest.DataMessage(payload)
		if len(msg) < size {
			t.Fatalf("message of %d bytes", len(msg))
		}
		_ = w.ws.SetWriteDeadline(time.Now().Add(testWait))
		mw, err := w.ws.NextWriter(websocket.BinaryMessage)
		if err != nil {
			t.Fatal(err)
		}
		for chunk := range slices.Chunk(msg, 1024) {
			if _, err := mw.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if err := mw.Close(); err != nil {
			t.Fatal(err)
		}
		f := a.frames.wait(t, fmt.Sprintf("the %d-byte datagram", size), func(f protocols.Frame) bool {
			return f.Device == "scripted" && bytes.Contains(f.Payload, []byte(counter))
		})
		var got struct {
			Datagram struct {
				Payload struct {
					Cmd []struct {
						Description string `json:"description"`
					} `json:"cmd"`
				} `json:"payload"`
			} `json:"datagram"`
		}
		if err := json.Unmarshal(f.Payload, &got); err != nil || len(got.Datagram.Payload.Cmd) != 1 || got.Datagram.Payload.Cmd[0].Description != description {
			t.Fatalf("%d bytes: the router got %d bytes that do not hold the description (%v)", size, len(f.Payload), err)
		}
	}

	// The other way: a command datagram of 300 KiB reaches the peer whole.
	description := strings.Repeat("y", 300<<10)
	if err := a.rt.Command(protocols.Command{Device: "scripted", ID: "big", Name: "spine",
		Args: json.RawMessage(`{"datagram":{"header":{"msgCounter":2},"payload":{"cmd":[{"description":"` + description + `"}]}}}`)}); err != nil {
		t.Fatal(err)
	}
	typ, body, err := eebus.Decode(w.next())
	if err != nil || typ != eebus.TypeData || !bytes.Contains(body, []byte(description)) {
		t.Fatalf("peer got type %v, %d bytes (%v), want the data message with the description", typ, len(body), err)
	}
}
