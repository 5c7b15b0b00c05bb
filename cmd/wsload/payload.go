package main

import (
	"bytes"
	"strconv"
	"strings"
)

// The payload of every load message is a JSON object
//
//	{"seq":17,"t":1767225600123456789,"pad":"xxxx..."}
//
// with the device's seq, the send time in Unix nanoseconds and padding up to
// -size bytes. The gateway publishes it unchanged (or wrapped in its envelope,
// which starts with the same seq), so the subscriber reads seq and send time
// back from what the broker delivers.

// pad is a run of padding bytes, sliced for each payload.
var pad = strings.Repeat("x", 4096)

// minPayload is the size of a payload without padding at its longest seq and
// time; smaller -size values give payloads of about this size.
const minPayload = len(`{"seq":18446744073709551615,"t":-9223372036854775808,"pad":""}`)

// appendPayload appends the payload of message seq sent at t (Unix
// nanoseconds), padded to exactly size bytes when size allows.
func appendPayload(dst []byte, seq uint64, t int64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, `,"pad":"`...)
	for n := size - (len(dst) - start) - len(`"}`); n > 0; {
		k := min(n, len(pad))
		dst = append(dst, pad[:k]...)
		n -= k
	}
	return append(dst, `"}`...)
}

// appendPub appends a done pub carrying the payload of message seq.
func appendPub(dst []byte, ch string, seq uint64, qos byte, t int64, size int) []byte {
	dst = append(dst, `{"op":"pub","ch":"`...)
	dst = append(dst, ch...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"qos":`...)
	dst = strconv.AppendUint(dst, uint64(qos), 10)
	dst = append(dst, `,"data":`...)
	dst = appendPayload(dst, seq, t, size)
	return append(dst, '}')
}

var (
	seqKey  = []byte(`"seq":`)
	timeKey = []byte(`"t":`)
)

// parsePayload reads seq and send time back from a delivered payload: the
// bare payload or the gateway's envelope {"seq":..,"ts":..,"data":{payload}}.
// It scans for the two keys instead of decoding JSON: the subscriber must keep
// up with the broker.
func parsePayload(p []byte) (seq uint64, t int64, ok bool) {
	i := bytes.Index(p, seqKey)
	j := bytes.Index(p, timeKey)
	if i < 0 || j < 0 {
		return 0, 0, false
	}
	seqDigits := leadingNumber(p[i+len(seqKey):])
	tDigits := leadingNumber(p[j+len(timeKey):])
	seq, err1 := strconv.ParseUint(string(seqDigits), 10, 64)
	t, err2 := strconv.ParseInt(string(tDigits), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return seq, t, true
}

// leadingNumber is the integer at the start of b, after optional spaces.
func leadingNumber(b []byte) []byte {
	b = bytes.TrimLeft(b, " ")
	n := 0
	if n < len(b) && b[n] == '-' {
		n++
	}
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	return b[:n]
}
