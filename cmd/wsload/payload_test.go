package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPayloadSizeAndContent(t *testing.T) {
	t.Parallel()
	const when = 1767225600123456789
	for _, size := range []int{0, 10, minPayload, 100, 200, 4096, 5000, 70000} {
		p := appendPayload(nil, 42, when, size)
		if size >= minPayload && len(p) != size {
			t.Errorf("size %d: payload is %d bytes", size, len(p))
		}
		var v struct {
			Seq uint64 `json:"seq"`
			T   int64  `json:"t"`
			Pad string `json:"pad"`
		}
		if err := json.Unmarshal(p, &v); err != nil {
			t.Fatalf("size %d: not JSON: %v: %s", size, err, p)
		}
		if v.Seq != 42 || v.T != when || strings.Trim(v.Pad, "x") != "" {
			t.Errorf("size %d: decoded %+v", size, v)
		}
		seq, sent, ok := parsePayload(p)
		if !ok || seq != 42 || sent != when {
			t.Errorf("size %d: parsePayload = %d, %d, %v", size, seq, sent, ok)
		}
	}
}

func TestAppendPubIsADonePub(t *testing.T) {
	t.Parallel()
	msg := appendPub([]byte("garbage"), channel, 7, 1, 123, 200)[len("garbage"):]
	var v struct {
		Op   string          `json:"op"`
		Ch   string          `json:"ch"`
		Seq  uint64          `json:"seq"`
		QoS  int             `json:"qos"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(msg, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, msg)
	}
	if v.Op != "pub" || v.Ch != "load" || v.Seq != 7 || v.QoS != 1 || len(v.Data) != 200 {
		t.Errorf("pub %+v (data %d bytes)", v, len(v.Data))
	}
}

func TestParsePayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		seq  uint64
		t    int64
		okay bool
	}{
		{`{"seq":1,"t":2,"pad":""}`, 1, 2, true},
		{`{"seq":7,"ts":1700000000000,"data":{"seq":7,"t":99,"pad":"xx"}}`, 7, 99, true}, // the gateway's envelope
		{`{"seq": 3, "t": -5}`, 3, -5, true},
		{`{"t":2}`, 0, 0, false},
		{`{"seq":1}`, 0, 0, false},
		{`{"seq":"1","t":2}`, 0, 0, false},
		{`{"seq":1,"t":}`, 0, 0, false},
		{`{"seq":-1,"t":2}`, 0, 0, false},
		{`{"seq":1,"t":99999999999999999999}`, 0, 0, false},
		{``, 0, 0, false},
	}
	for _, tt := range tests {
		seq, ts, ok := parsePayload([]byte(tt.in))
		if seq != tt.seq || ts != tt.t || ok != tt.okay {
			t.Errorf("parsePayload(%s) = %d, %d, %v; want %d, %d, %v", tt.in, seq, ts, ok, tt.seq, tt.t, tt.okay)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	f.Add([]byte(`{"seq":1,"t":2,"pad":""}`))
	f.Add([]byte(`{"seq":-,"t":-`))
	f.Fuzz(func(t *testing.T, p []byte) {
		seq, ts, ok := parsePayload(p)
		if !ok && (seq != 0 || ts != 0) {
			t.Errorf("not ok but returned %d, %d", seq, ts)
		}
	})
}
