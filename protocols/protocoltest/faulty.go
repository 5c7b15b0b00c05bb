package protocoltest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/wsgate/wsgate/protocols"
)

// Magic starts the messages Faulty takes for itself instead of handing
// them to the protocol it wraps:
//
//	Magic+"panic"  the session panics
//	Magic+"tls"    the session answers "tls <version>" (0 without TLS)
//	Magic+"busy"   the session publishes a QoS 1 frame and answers "busy
//	               <error>" with what Publish, or the frame's Ack, said
//	Magic+"frame"  the session publishes fullFrame(), answering "frame
//	               <error>" with what its Ack said, then a QoS 0 frame
//	               with nothing optional on channel "contract/frame/plain"
//
// A session whose path ends in "/refuse" is refused by NewSession with
// close code 4001, and GoingAway answers "going-away" before closing with
// 1001. The texts are sent as text messages.
const Magic = "\x00wsgate-contract:"

// fullFrame is the frame the "frame" probe publishes: every field a
// protocol sets, with a value that is not the zero one (the Ack aside).
func fullFrame() protocols.Frame {
	return protocols.Frame{
		Channel: "contract/frame", Payload: []byte{0, 1, 0xfe, 0xff},
		QoS: 1, Retain: true, Seq: 42, HasSeq: true,
	}
}

// RefuseCode and RefuseReason are the close of a refused session.
const (
	RefuseCode   = 4001
	RefuseReason = "refused on purpose"
)

// Faulty wraps p with the faults and probes the contract suite needs, for
// every deployment alike: in process, or inside a plugin binary that
// serves protocoltest.Faulty(p) with sdk.Serve.
func Faulty(p protocols.Protocol) protocols.Protocol { return faulty{p} }

type faulty struct{ inner protocols.Protocol }

func (f faulty) Name() string { return f.inner.Name() }

func (f faulty) NewSession(ctx context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	if strings.HasSuffix(info.Path, "/refuse") {
		return nil, &protocols.CloseError{Code: RefuseCode, Reason: RefuseReason}
	}
	s, err := f.inner.NewSession(ctx, info, out)
	if err != nil {
		return nil, err
	}
	return &faultySession{Session: s, out: out, info: info}, nil
}

type faultySession struct {
	protocols.Session
	out  protocols.Outlet
	info protocols.SessionInfo
}

func (s *faultySession) OnMessage(m protocols.Message) error {
	probe, ok := bytes.CutPrefix(m.Data, []byte(Magic))
	if !ok {
		return s.Session.OnMessage(m)
	}
	switch string(probe) {
	case "panic":
		panic("protocoltest: a panic on purpose")
	case "tls":
		version := uint16(0)
		if s.info.TLS != nil {
			version = s.info.TLS.Version
		}
		return s.reply(fmt.Sprintf("tls %d", version))
	case "busy":
		var once sync.Once
		answer := func(err error) {
			once.Do(func() { _ = s.reply(fmt.Sprintf("busy %v", err)) })
		}
		err := s.out.Publish(protocols.Frame{Channel: "contract/busy", Payload: []byte("1"), QoS: 1, Ack: func(err error) {
			if err != nil {
				answer(err)
			}
		}})
		if err != nil {
			answer(err)
		}
		return nil
	case "frame":
		f := fullFrame()
		f.Ack = func(err error) { _ = s.reply(fmt.Sprintf("frame %v", err)) }
		if err := s.out.Publish(f); err != nil {
			return err
		}
		return s.out.Publish(protocols.Frame{Channel: "contract/frame/plain", Payload: []byte("0")})
	}
	return fmt.Errorf("protocoltest: unknown probe %q", probe)
}

func (s *faultySession) GoingAway() {
	_ = s.reply("going-away")
	s.out.Close(protocols.CloseGoingAway, "going away")
}

func (s *faultySession) reply(text string) error {
	return s.out.Send(protocols.Message{Type: protocols.Text, Data: []byte(text)})
}

// IsBusy reports whether a "busy" probe's answer tells ErrBusy.
func IsBusy(answer string) bool {
	return strings.HasPrefix(answer, "busy ") && strings.Contains(answer, protocols.ErrBusy.Error())
}

var _ protocols.GoingAway = (*faultySession)(nil)
