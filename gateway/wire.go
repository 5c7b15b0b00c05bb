package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/wsgate/wsgate/protocols"
)

// Why a wire guard: gorilla checks most of RFC 6455 section 5 itself, but
// answers a violation by writing its close frame at once, ahead of replies
// the session has queued for messages that arrived before the violation,
// which are then lost. It also takes a close frame with a 1-byte payload for
// an empty one (section 5.5.1 makes it a protocol error) and lets RSV1 pass
// on control and continuation frames when permessage-deflate is on (RFC 7692
// section 6). So every connection reads through a wireConn whose frameGuard
// follows the client's frame headers as the bytes go by, holds back the
// first byte that makes the stream invalid and reports the violation in its
// place. gorilla parses everything before it, the session answers it, and
// the read loop then fails the connection with the guard's close code,
// queued behind those answers (conn.fail).

// wireError is a violation the guard found: the close code to fail the
// connection with and why.
type wireError struct {
	code   int
	reason string
}

func (e *wireError) Error() string {
	return fmt.Sprintf("websocket: %s (close %d)", e.reason, e.code)
}

func protocolError(format string, args ...any) *wireError {
	return &wireError{code: protocols.CloseProtocolError, reason: fmt.Sprintf(format, args...)}
}

// Frame opcodes of RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Where the guard is within a frame.
const (
	atHeader0 = iota // FIN, RSV1-3, opcode
	atHeader1        // MASK, payload length
	atLength         // the 2 or 8 bytes of an extended payload length
	atMask           // the masking key
	atPayload
)

// frameGuard follows the frames a client sends, byte by byte in the headers
// and in close frames, in bulk through other payloads. It needs no buffer
// (88 bytes on amd64): a few counters, the masking key and up to three bytes
// of UTF-8 of a close reason.
type frameGuard struct {
	deflate bool  // permessage-deflate negotiated: RSV1 starts a compressed message
	limit   int64 // wire bytes of an uncompressed message; 0: no limit
	zlimit  int64 // wire bytes of a compressed message; 0: no limit

	at         uint8
	need       uint8 // bytes left of the extended length or the masking key
	op         byte
	fragmented bool   // a data message has begun and not finished
	compressed bool   // the current data message has RSV1
	length     uint64 // payload length, then the payload bytes still to come
	message    int64  // wire bytes of the current data message so far
	closed     bool   // a valid close frame went by: gorilla reads no further

	// The close frame being checked.
	mask   [4]byte
	pos    int // its payload bytes seen
	code   int
	reason utf8Stream
}

func newFrameGuard(maxMessage int64, deflate bool) frameGuard {
	g := frameGuard{deflate: deflate}
	if maxMessage > 0 {
		g.limit = maxMessage
		g.zlimit = compressedWireLimit(maxMessage)
	}
	return g
}

// compressedWireLimit bounds the wire size of a compressed message whose
// inflated size the read loop limits to maxMessage: deflate may expand
// incompressible data a little, and without a bound a peer could send empty
// deflate blocks for ever.
func compressedWireLimit(maxMessage int64) int64 {
	return maxMessage + maxMessage/8 + 1024
}

// scan follows p, the next bytes from the client. It returns how many of
// them may be passed on, and the violation at the first byte held back.
func (g *frameGuard) scan(p []byte) (int, *wireError) {
	for i := 0; i < len(p); {
		if g.closed {
			return len(p), nil
		}
		b := p[i]
		var err *wireError
		switch g.at {
		case atHeader0:
			err = g.header0(b)
		case atHeader1:
			err = g.header1(b)
		case atLength:
			err = g.lengthByte(b)
		case atMask:
			g.mask[4-g.need] = b
			if g.need--; g.need == 0 {
				g.payloadStart()
			}
		case atPayload:
			if g.op == opClose {
				err = g.closeByte(b ^ g.mask[g.pos%4])
				break
			}
			n := min(uint64(len(p)-i), g.length)
			g.length -= n
			i += int(n)
			if g.length == 0 {
				g.at = atHeader0
			}
			continue
		}
		if err != nil {
			return i, err
		}
		i++
	}
	return len(p), nil
}

func (g *frameGuard) header0(b byte) *wireError {
	fin := b&0x80 != 0
	rsv1 := b&0x40 != 0
	op := b & 0x0F
	control := op >= opClose
	switch {
	case op > opBinary && op < opClose || op > opPong:
		return protocolError("reserved opcode %d", op)
	case b&0x30 != 0:
		return protocolError("reserved bits RSV2/RSV3 set")
	case rsv1 && !g.deflate:
		return protocolError("RSV1 set without a negotiated extension")
	case rsv1 && (control || op == opContinuation):
		return protocolError("RSV1 set on a control or continuation frame")
	case control && !fin:
		return protocolError("fragmented control frame")
	case op == opContinuation && !g.fragmented:
		return protocolError("continuation frame without a message to continue")
	case (op == opText || op == opBinary) && g.fragmented:
		return protocolError("new message inside a fragmented message")
	}
	switch op {
	case opText, opBinary:
		g.compressed = rsv1
		g.message = 0
		g.fragmented = !fin
	case opContinuation:
		g.fragmented = !fin
	}
	g.op = op
	g.at = atHeader1
	return nil
}

func (g *frameGuard) header1(b byte) *wireError {
	if b&0x80 == 0 {
		return protocolError("unmasked frame from a client")
	}
	n := b & 0x7F
	if g.op >= opClose {
		switch {
		case n > 125:
			return protocolError("control frame payload over 125 bytes")
		case g.op == opClose && n == 1:
			return protocolError("close frame with a 1-byte payload")
		}
	}
	switch n {
	case 126:
		g.at, g.need, g.length = atLength, 2, 0
	case 127:
		g.at, g.need, g.length = atLength, 8, 0
	default:
		g.length = uint64(n)
		return g.lengthKnown()
	}
	return nil
}

func (g *frameGuard) lengthByte(b byte) *wireError {
	if g.need == 8 && b&0x80 != 0 {
		return protocolError("payload length with the most significant bit set")
	}
	g.length = g.length<<8 | uint64(b)
	if g.need--; g.need == 0 {
		return g.lengthKnown()
	}
	return nil
}

// lengthKnown applies the message size limit as soon as a frame announces
// its length, before its payload is read.
func (g *frameGuard) lengthKnown() *wireError {
	if g.op < opClose {
		limit := g.limit
		if g.compressed {
			limit = g.zlimit
		}
		if limit > 0 {
			if g.length > uint64(limit-g.message) {
				return &wireError{code: protocols.CloseMessageTooBig, reason: "message too big"}
			}
			g.message += int64(g.length)
		}
	}
	g.at, g.need = atMask, 4
	return nil
}

func (g *frameGuard) payloadStart() {
	g.at = atPayload
	if g.op == opClose {
		g.pos, g.code, g.reason = 0, 0, utf8Stream{}
	}
	if g.length == 0 {
		g.frameEnd()
	}
}

func (g *frameGuard) frameEnd() {
	g.at = atHeader0
	if g.op == opClose {
		g.closed = true
	}
}

// closeByte checks the close frame payload b belongs to (unmasked): a valid
// status code, then a UTF-8 reason.
func (g *frameGuard) closeByte(b byte) *wireError {
	switch g.pos {
	case 0:
		g.code = int(b) << 8
	case 1:
		g.code |= int(b)
		if !validCloseCode(g.code) {
			return protocolError("invalid close code %d", g.code)
		}
	default:
		if !g.reason.write([]byte{b}) {
			return protocolError("invalid UTF-8 in the close reason")
		}
	}
	g.pos++
	if g.length--; g.length == 0 {
		if !g.reason.done() {
			return protocolError("invalid UTF-8 in the close reason")
		}
		g.frameEnd()
	}
	return nil
}

// validCloseCode reports whether a peer may send code (RFC 6455 section
// 7.4): the codes defined for use in a close frame, the registered 1012 and
// 1013, and 3000-4999 for libraries and applications. 1014 is registered
// too, but gorilla refuses it and the two must agree.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1013:
		return true
	}
	return code >= 3000 && code <= 4999
}

// wireConn is a connection after the upgrade: reads go through the frame
// guard; the first write, gorilla's 101 response, may have its
// permessage-deflate line replaced.
type wireConn struct {
	net.Conn // the accepted connection (after TLS): raw for lingerClose
	guard    frameGuard
	err      *wireError // held back behind the bytes returned last
	// replay is a read error the read loop took from the bufio.Reader
	// over this connection (conn.peek), returned once by the next Read so
	// that gorilla sees it too.
	replay error

	deflate *deflateParams // offered and acceptable; nil: not enabled or not offered

	// While the connection's writer holds (hold, release), writes wait in
	// out and go out together: a burst of small messages, acks say, costs
	// one system call instead of one each. Writes of other goroutines
	// meanwhile, gorilla's control frames, join them.
	wmu     sync.Mutex
	holding bool
	out     *[]byte // from bufferPool while holding, so that an idle connection keeps none
}

// maxHeld bounds the bytes held back; beyond it they are written at once.
const maxHeld = 16 << 10

// hold starts holding writes back.
func (w *wireConn) hold() {
	w.wmu.Lock()
	w.holding = true
	w.wmu.Unlock()
}

// release writes what was held back and stops holding.
func (w *wireConn) release() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.holding = false
	err := w.flushLocked()
	if w.out != nil {
		putBuffer(w.out)
		w.out = nil
	}
	return err
}

func (w *wireConn) flushLocked() error {
	if w.out == nil || len(*w.out) == 0 {
		return nil
	}
	_, err := w.Conn.Write(*w.out)
	*w.out = (*w.out)[:0]
	return err
}

func (w *wireConn) Read(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if err := w.replay; err != nil {
		w.replay = nil
		return 0, err
	}
	n, err := w.Conn.Read(p)
	if n > 0 {
		if k, werr := w.guard.scan(p[:n]); werr != nil {
			w.err = werr
			if k == 0 {
				return 0, werr
			}
			return k, nil
		}
	}
	return n, err
}

// deflateLine starts the extension line gorilla writes in its handshake
// response whenever it compresses (its value is gorillaDeflateResponse).
const deflateLine = "\r\nSec-WebSocket-Extensions: permessage-deflate"

// Write passes writes on. The first one, the handshake response, shows
// whether gorilla turned compression on: then the guard lets RSV1 through
// and the response names the parameters of the offer accepted, which
// gorilla's fixed line cannot (server_max_window_bits).
func (w *wireConn) Write(p []byte) (int, error) {
	if w.deflate == nil {
		w.wmu.Lock()
		defer w.wmu.Unlock()
		if !w.holding {
			return w.Conn.Write(p)
		}
		if w.out == nil {
			w.out = getBuffer()
		}
		if len(*w.out)+len(p) > maxHeld {
			if err := w.flushLocked(); err != nil {
				return 0, err
			}
			if len(p) > maxHeld {
				return w.Conn.Write(p)
			}
		}
		*w.out = append(*w.out, p...)
		return len(p), nil
	}
	params := w.deflate
	w.deflate = nil
	start := bytes.Index(p, []byte(deflateLine))
	if start < 0 {
		return w.Conn.Write(p) // gorilla did not take the offer after all
	}
	w.guard.deflate = true
	n := bytes.Index(p[start+2:], []byte("\r\n")) // the line's own CRLF
	if n < 0 {
		return w.Conn.Write(p) // not a response gorilla writes
	}
	end := start + 2 + n
	line := "\r\nSec-WebSocket-Extensions: " + params.response()
	if string(p[start:end]) == line {
		return w.Conn.Write(p)
	}
	q := make([]byte, 0, len(p)+len(line)-(end-start))
	q = append(append(append(q, p[:start]...), line...), p[end:]...)
	if _, err := w.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// compressing reports whether permessage-deflate was negotiated; it is
// known once the handshake response has been written.
func (w *wireConn) compressing() bool { return w.guard.deflate }

// upgradeWriter hands gorilla the hijacked connection as a wireConn, and a
// bufio.Reader of readBufferSize over it instead of net/http's. gorilla
// resets the hijacked bufio.Reader onto the connection it gets (and refuses
// clients that sent frames before the response), so every byte read after
// the upgrade passes the guard.
type upgradeWriter struct {
	http.ResponseWriter
	maxMessage int64
	deflate    *deflateParams
	conn       *wireConn
	reader     *bufio.Reader // over conn, what gorilla reads through
}

// Hijack implements http.Hijacker.
func (u *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(u.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	u.conn = &wireConn{Conn: nc, guard: newFrameGuard(u.maxMessage, false), deflate: u.deflate}
	if brw.Reader.Buffered() > 0 {
		return u.conn, brw, nil // gorilla refuses the connection
	}
	// gorilla reads through this reader (the Upgrader's ReadBufferSize is
	// 0, so it reuses the hijacked one) and the read loop looks into it.
	u.reader = bufio.NewReaderSize(u.conn, readBufferSize)
	return u.conn, bufio.NewReadWriter(u.reader, brw.Writer), nil
}

var _ http.Hijacker = (*upgradeWriter)(nil)
