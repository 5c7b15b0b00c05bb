// Command testplugin is a protocol plugin for the host's tests. Its protocol
// (named by -ldflags "-X main.name=...", default "test-echo") echoes text
// messages, and messages starting with "!" drive it:
//
//	!attach ID          Attach(ID), answered "attached ID"
//	!publish CH DATA    publish a QoS 1 frame; answered "ack CH" or "nack CH"
//	!hang               never return from OnMessage (a stalled plugin)
//	!exit               exit the process (a crashing plugin)
//
// Commands are answered "cmd NAME"; a command named "refuse" is refused.
package main

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/wsgate/wsgate/plugins/sdk"
	"github.com/wsgate/wsgate/protocols"
)

var name = "test-echo"

type protocol struct{}

func (protocol) Name() string { return name }

func (protocol) NewSession(_ context.Context, _ protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	return session{out: out}, nil
}

type session struct{ out protocols.Outlet }

func (s session) reply(text string) error {
	return s.out.Send(protocols.Message{Type: protocols.Text, Data: []byte(text)})
}

func (s session) OnMessage(m protocols.Message) error {
	text := string(m.Data)
	verb, arg, _ := strings.Cut(text, " ")
	switch verb {
	case "!attach":
		if err := s.out.Attach(protocols.Device{ID: arg}); err != nil {
			return s.reply("error " + err.Error())
		}
		return s.reply("attached " + arg)
	case "!publish":
		ch, data, _ := strings.Cut(arg, " ")
		return s.out.Publish(protocols.Frame{Channel: ch, Payload: []byte(data), QoS: 1, Ack: func(err error) {
			if err != nil {
				_ = s.reply("nack " + ch)
				return
			}
			_ = s.reply("ack " + ch)
		}})
	case "!hang":
		select {}
	case "!exit":
		sdk.Logger().Error("exiting on request")
		os.Exit(3)
	}
	return s.out.Send(protocols.Message{Type: m.Type, Data: append([]byte(nil), m.Data...)})
}

func (s session) OnCommand(cmd protocols.Command) error {
	if cmd.Name == "refuse" {
		return errors.New("refused by the test plugin")
	}
	return s.reply("cmd " + cmd.Name)
}

func (session) Close(error) {}

func main() { sdk.Serve(protocol{}) }
