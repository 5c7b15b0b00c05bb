package pluginpb

import (
	"github.com/planetscale/vtprotobuf/protohelpers"

	"github.com/wsgate/wsgate/protocols"
)

// The events and actions a busy session sends per device message, each
// built in one allocation rather than one per level of nesting (the event,
// its oneof wrapper, the payload message): the collector's share of a
// plugin's cost follows its allocations.

// MessageEvent is the Message event carrying m; m.Data is not copied.
func MessageEvent(m protocols.Message) *Event {
	e := new(struct {
		ev   Event
		wrap Event_Message
		msg  Message
	})
	e.msg.Type, e.msg.Data = messageType(m.Type), m.Data
	e.wrap.Message = &e.msg
	e.ev.Event = &e.wrap
	return &e.ev
}

// AckEvent is the Ack event settling frame with err (nil: the frame is
// safe).
func AckEvent(frame uint64, err error) *Event {
	e := new(struct {
		ev   Event
		wrap Event_Ack
		ack  Ack
	})
	e.ack.Frame, e.ack.Error = frame, ToError(err)
	e.wrap.Ack = &e.ack
	e.ev.Event = &e.wrap
	return &e.ev
}

// SendAction is the Send action carrying m; m.Data is not copied.
func SendAction(m protocols.Message) *Action {
	a := new(struct {
		act  Action
		wrap Action_Send
		msg  Message
	})
	a.msg.Type, a.msg.Data = messageType(m.Type), m.Data
	a.wrap.Send = &a.msg
	a.act.Action = &a.wrap
	return &a.act
}

// PublishAction is the Publish action of f, whose Ack, if any, the caller
// keeps under id; f.Payload is not copied.
func PublishAction(f protocols.Frame, id uint64) *Action {
	a := new(struct {
		act   Action
		wrap  Action_Publish
		frame Frame
	})
	a.frame = Frame{Id: id, Channel: f.Channel, Payload: f.Payload, Qos: uint32(f.QoS), Retain: f.Retain, WantsAck: f.Ack != nil,
		Seq: f.Seq, HasSeq: f.HasSeq}
	a.wrap.Publish = &a.frame
	a.act.Action = &a.wrap
	return &a.act
}

func messageType(t protocols.MessageType) MessageType {
	if t == protocols.Binary {
		return MessageType_MESSAGE_TYPE_BINARY
	}
	return MessageType_MESSAGE_TYPE_TEXT
}

// MaxBatchBytes bounds the encoded size of one Events or Actions batch
// (one event or action alone may be larger), so that a busy link's
// buffers stay small.
const MaxBatchBytes = 64 << 10

// BatchedSize is what m adds to the encoded size of a batch: its key, its
// length and itself.
func BatchedSize(m interface{ SizeVT() int }) int {
	n := m.SizeVT()
	return 1 + protohelpers.SizeOfVarint(uint64(n)) + n
}
