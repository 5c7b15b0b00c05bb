package pluginpb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
)

// The link carries the sessions' events and actions between the gateway
// and a plugin process. It is not a gRPC stream: it is one end of a socket
// pair the gateway hands the plugin at start, as file descriptor LinkFD,
// and each side writes frames on it: a varint length, then that many
// bytes of an Events (gateway to plugin) or Actions (plugin to gateway)
// message.
//
// Through gRPC every batch went through HTTP/2 framing, TLS, and two
// goroutine hand-overs on each side (gRPC's reader and writer); on the
// socket pair a batch is one write and one read, and the pair is private
// to the two processes, so it needs no authentication of its own. The
// go-plugin gRPC connection remains for the handshake, Describe and the
// health probes.

// LinkFD is the plugin's file descriptor for its end of the link (the
// first of exec.Cmd.ExtraFiles); LinkEnv names it in the plugin's
// environment, so that a binary started otherwise can tell.
const (
	LinkFD  = 3
	LinkEnv = "WSGATE_PLUGIN_LINK_FD"
)

// LinkFile returns the plugin's end of the link, from its environment.
func LinkFile() (*os.File, error) {
	v := os.Getenv(LinkEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd != LinkFD {
		return nil, fmt.Errorf("%s is %q: this binary was not started by wsgate, or by an older one", LinkEnv, v)
	}
	return os.NewFile(uintptr(fd), "wsgate-link"), nil
}

// MaxFrame bounds a frame's length. A batch is kept to MaxBatchBytes, but
// one event or action alone may be larger: a message up to the gateway's
// websocket.max_message, which the configuration caps well below this.
const MaxFrame = 256 << 20

// ErrFrameTooLarge is returned for a frame whose length is over MaxFrame:
// the other side is not speaking this contract.
var ErrFrameTooLarge = errors.New("link frame over the size limit")

// vtMessage is the code protoc-gen-go-vtproto generates for this
// contract's messages (plugin_vtproto.pb.go): marshalling without
// reflection, a few times cheaper than the generic protobuf runtime.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
	UnmarshalVT(src []byte) error
}

// AppendFrame appends m as one frame to buf.
func AppendFrame(buf []byte, m vtMessage) ([]byte, error) {
	size := m.SizeVT()
	buf = binary.AppendUvarint(buf, uint64(size))
	start := len(buf)
	buf = append(buf, make([]byte, size)...)
	if _, err := m.MarshalToSizedBufferVT(buf[start:]); err != nil {
		return buf[:start], err
	}
	return buf, nil
}

// ReadFrame reads one frame from r into m, using buf (grown as needed and
// returned) for its bytes; m keeps none of them.
func ReadFrame(r *bufio.Reader, buf []byte, m vtMessage) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return buf, err
	}
	if size > MaxFrame {
		return buf, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, size)
	}
	data := buf
	if uint64(cap(data)) < size {
		data = make([]byte, size)
		if size <= keptBuffer {
			buf = data
		}
	}
	data = data[:size]
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	if err := m.UnmarshalVT(data); err != nil {
		return buf, fmt.Errorf("link frame: %w", err)
	}
	return buf, nil
}

// keptBuffer bounds the buffer a reader or writer keeps between frames: a
// rare large message gets one of its own, which the collector takes back.
const keptBuffer = 1 << 20

// Reuse returns buf emptied for the next frame, or nil when it has grown
// beyond what is worth keeping.
func Reuse(buf []byte) []byte {
	if cap(buf) > keptBuffer {
		return nil
	}
	return buf[:0]
}

// Shared is a batch read from the link and shared by the sessions its
// events or actions are for. It goes back to its pool, with the events,
// actions, frames and messages in it, once each of them has been handled
// and the reader has let go, so that busy sessions allocate little more
// than the payloads they keep.
type Shared[M interface{ ReturnToVTPool() }] struct {
	Batch   M
	pending atomic.Int32
}

// Hold marks the batch as holding n items to be handled, plus the
// reader's own hold, which its last Done releases.
func (s *Shared[M]) Hold(n int) { s.pending.Store(int32(n) + 1) }

// Done counts one item handled, or dropped, or the reader letting go.
func (s *Shared[M]) Done() {
	if s.pending.Add(-1) == 0 {
		s.Batch.ReturnToVTPool()
	}
}
