// Command testplugin is a protocol plugin for the host's tests. Its protocol
// (named by -ldflags "-X main.name=...", default "test-echo") echoes
// messages, and messages starting with "!" drive it:
//
//	!attach ID             Attach(ID), answered "attached ID", or "attach
//	                       refused SENTINEL" naming the protocols error it
//	                       matches ("other" for none)
//	!publish CH DATA       publish a QoS 1 frame; answered "ack CH" or "nack CH"
//	!tls                   answered "tls VERSION CIPHER SERVER-NAME PEER-CN"
//	                       from the session's TLS state, or "tls none"
//	!flood send|publish    Send (or Publish) 1 KiB messages until one fails,
//	                       log "flood stopped" with the error, and send
//	                       "flood over" as soon as the gateway takes it
//	!hang                  never return from OnMessage (a stalled plugin)
//	!panic                 panic in OnMessage
//	!exit                  exit the process (a crashing plugin)
//
// Commands are answered "cmd NAME"; a command named "refuse" is refused and
// one named "panic" panics. The path the device connects on picks how the
// session starts:
//
//	/refuse/CODE/REASON    NewSession returns a *protocols.CloseError
//	/fail                  NewSession returns "no such device"
//	/panic-in/METHOD       panic in NewSession, Close or GoingAway
//	/polite                the session implements protocols.GoingAway: it
//	                       answers "going away" and closes with 1000 "bye"
//	/slow-open             NewSession waits for its context to end, logs
//	                       "open abandoned" and fails
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/plugins/sdk"
	"github.com/wsgate/wsgate/protocols"
)

var name = "test-echo"

type protocol struct{}

func (protocol) Name() string { return name }

func (protocol) NewSession(ctx context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	s := &session{out: out, info: info}
	verb, arg, _ := strings.Cut(strings.TrimPrefix(info.Path, "/"), "/")
	switch verb {
	case "refuse":
		code, reason, _ := strings.Cut(arg, "/")
		n, err := strconv.Atoi(code)
		if err != nil {
			return nil, err
		}
		return nil, &protocols.CloseError{Code: n, Reason: reason}
	case "fail":
		return nil, errors.New("no such device")
	case "panic-in":
		s.panicIn = arg
		switch arg {
		case "NewSession":
			panic("poisoned NewSession")
		case "GoingAway":
			return politeSession{s}, nil
		}
	case "polite":
		return politeSession{s}, nil
	case "slow-open":
		// Until the gateway gives up on the connection, which ends ctx.
		select {
		case <-ctx.Done():
			sdk.Logger().Info("open abandoned", "err", ctx.Err().Error())
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			return nil, errors.New("the gateway never gave up")
		}
	}
	return s, nil
}

type session struct {
	out     protocols.Outlet
	info    protocols.SessionInfo
	panicIn string // the method that panics
}

func (s *session) reply(text string) error {
	return s.out.Send(protocols.Message{Type: protocols.Text, Data: []byte(text)})
}

func (s *session) OnMessage(m protocols.Message) error {
	text := string(m.Data)
	verb, arg, _ := strings.Cut(text, " ")
	switch verb {
	case "!attach":
		if err := s.out.Attach(protocols.Device{ID: arg}); err != nil {
			return s.reply("attach refused " + sentinel(err))
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
	case "!tls":
		return s.reply(describeTLS(s.info))
	case "!flood":
		flood(s.out, arg == "publish")
		return nil
	case "!hang":
		select {}
	case "!panic":
		panic("poisoned message")
	case "!exit":
		sdk.Logger().Error("exiting on request")
		os.Exit(3)
	}
	return s.out.Send(protocols.Message{Type: m.Type, Data: append([]byte(nil), m.Data...)})
}

func (s *session) OnCommand(cmd protocols.Command) error {
	switch cmd.Name {
	case "refuse":
		return errors.New("refused by the test plugin")
	case "panic":
		panic("poisoned command")
	}
	return s.reply("cmd " + cmd.Name)
}

func (s *session) Close(error) {
	if s.panicIn == "Close" {
		panic("poisoned Close")
	}
}

// politeSession has a closing handshake of its own.
type politeSession struct{ *session }

func (s politeSession) GoingAway() {
	if s.panicIn == "GoingAway" {
		panic("poisoned GoingAway")
	}
	_ = s.reply("going away")
	s.out.Close(protocols.CloseNormal, "bye")
}

// sentinel names the protocols error err matches.
func sentinel(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{
		{"unauthorized", protocols.ErrUnauthorized},
		{"forbidden", protocols.ErrForbidden},
		{"busy", protocols.ErrBusy},
		{"closed", protocols.ErrClosed},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "other"
}

func describeTLS(info protocols.SessionInfo) string {
	t := info.TLS
	if t == nil {
		return "tls none"
	}
	cn := "-"
	if len(t.PeerCertificates) > 0 {
		cn = t.PeerCertificates[0].Subject.CommonName
	}
	return fmt.Sprintf("tls %#04x %#04x %s %s", t.Version, t.CipherSuite, t.ServerName, cn)
}

// flood calls Send or Publish until one fails; the outcome goes to the log,
// since the gateway is not expected to take more actions meanwhile.
func flood(out protocols.Outlet, publish bool) {
	payload := make([]byte, 1024)
	var err error
	calls := 0
	for ; err == nil && calls < 100_000; calls++ {
		if publish {
			err = out.Publish(protocols.Frame{Channel: "flood", Payload: payload})
		} else {
			err = out.Send(protocols.Message{Type: protocols.Binary, Data: payload})
		}
	}
	sdk.Logger().Info("flood stopped", "calls", calls, "err", fmt.Sprint(err),
		"send_queue_full", errors.Is(err, protocols.ErrSendQueueFull), "busy", errors.Is(err, protocols.ErrBusy))
	// Then wait, as a patient protocol would, until the gateway takes
	// messages again.
	over := protocols.Message{Type: protocols.Text, Data: []byte("flood over")}
	for err := out.Send(over); err != nil && !errors.Is(err, protocols.ErrClosed); err = out.Send(over) {
		time.Sleep(10 * time.Millisecond)
	}
}

func main() { sdk.Serve(protocol{}) }
