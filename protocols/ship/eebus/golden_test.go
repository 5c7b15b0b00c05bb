package eebus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// traceLine is one SHIP message of a golden trace.
type traceLine struct {
	where string // file:line
	t     MessageType
	body  []byte // EEBus JSON; the CMI head for TypeInit
}

// frame is the message as it went over the wire.
func (l traceLine) frame() []byte { return Encode(l.t, l.body) }

// readTrace reads a trace file of testdata: "<sender> -> <type> <json>" or
// "<sender> -> 00 00" per line, # for comments.
func readTrace(t testing.TB, name string) []traceLine {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []traceLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		where := name + ":" + strconv.Itoa(n)
		_, msg, ok := strings.Cut(text, " -> ")
		if !ok {
			t.Fatalf("%s: no ' -> '", where)
		}
		if msg == "00 00" {
			lines = append(lines, traceLine{where: where, t: TypeInit, body: []byte{0}})
			continue
		}
		typ, body, ok := strings.Cut(msg, " ")
		b, err := strconv.ParseUint(typ, 10, 8)
		if !ok || err != nil {
			t.Fatalf("%s: bad message %q", where, msg)
		}
		lines = append(lines, traceLine{where: where, t: MessageType(b), body: []byte(body)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// traces is every SHIP message of both golden traces.
func traces(t testing.TB) []traceLine {
	t.Helper()
	return append(readTrace(t, "trace-autoaccept.txt"), readTrace(t, "trace-pending.txt")...)
}

// compact returns the compact form of JSON text: equal compact forms mean
// the same JSON with the same key order and the same scalar spelling.
func compact(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		t.Fatalf("compact %s: %v", data, err)
	}
	return b.Bytes()
}

func TestTraceFrames(t *testing.T) {
	t.Parallel()
	lines := traces(t)
	if len(lines) != 21 {
		t.Fatalf("%d trace lines, want 21", len(lines))
	}
	for _, l := range lines {
		typ, body, err := Decode(l.frame())
		if err != nil || typ != l.t || !bytes.Equal(body, l.body) {
			t.Errorf("%s: Decode = %v, %q, %v", l.where, typ, body, err)
		}
		if l.t == TypeInit && !bytes.Equal(l.frame(), CMI()) {
			t.Errorf("%s: CMI frame % x, want % x", l.where, l.frame(), CMI())
		}
	}
}

// TestTraceTyped decodes every message of the traces into its Go type and
// marshals it back: the bytes must be those on the wire, and the message
// must travel with the type byte it was seen with.
func TestTraceTyped(t *testing.T) {
	t.Parallel()
	for _, l := range traces(t) {
		if l.t == TypeInit {
			continue
		}
		name, err := Peek(l.body)
		if err != nil {
			t.Fatalf("%s: Peek: %v", l.where, err)
		}
		m, ok := NewMessage(name)
		if !ok {
			t.Fatalf("%s: no type for %q", l.where, name)
		}
		if err := Unmarshal(l.body, m); err != nil {
			t.Fatalf("%s: Unmarshal: %v", l.where, err)
		}
		got, err := Marshal(m)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", l.where, err)
		}
		if !bytes.Equal(got, l.body) {
			t.Errorf("%s: Marshal\n got %s\nwant %s", l.where, got, l.body)
		}
		frame, err := EncodeMessage(m)
		if err != nil || !bytes.Equal(frame, l.frame()) {
			t.Errorf("%s: EncodeMessage = %q, %v; want %q", l.where, frame, err, l.frame())
		}
	}
}

// TestTraceUntyped converts every message of the traces to plain JSON and
// back: the bytes must be those on the wire.
func TestTraceUntyped(t *testing.T) {
	t.Parallel()
	for _, l := range traces(t) {
		if l.t == TypeInit {
			continue
		}
		plain, err := FromEEBus(l.body)
		if err != nil {
			t.Fatalf("%s: FromEEBus: %v", l.where, err)
		}
		back, err := ToEEBus(plain)
		if err != nil {
			t.Fatalf("%s: ToEEBus(%s): %v", l.where, plain, err)
		}
		if !bytes.Equal(back, l.body) {
			t.Errorf("%s: ToEEBus(FromEEBus(x))\n got %s\nwant %s\nplain %s", l.where, back, l.body, plain)
		}
	}
}

// TestTraceDataPlain checks the data message against its de-quirked form
// (section 10; the golden file spells out the addressDestination the
// section abbreviates), in both directions, and that the SPINE layer gets
// the datagram alone from the typed payload.
func TestTraceDataPlain(t *testing.T) {
	t.Parallel()
	var data traceLine
	for _, l := range traces(t) {
		if l.t == TypeData {
			data = l
		}
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "data-plain.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := compact(t, golden)

	plain, err := FromEEBus(data.body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, want) {
		t.Errorf("FromEEBus(data)\n got %s\nwant %s", plain, want)
	}
	eebus, err := ToEEBus(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(eebus, data.body) {
		t.Errorf("ToEEBus(data-plain.json)\n got %s\nwant %s", eebus, data.body)
	}

	var d Data
	if err := Unmarshal(data.body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Header.ProtocolID != ProtocolIDSPINE {
		t.Errorf("protocolId %q", d.Header.ProtocolID)
	}
	spine, err := FromEEBus(d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var wantSpine struct {
		Data struct {
			Payload json.RawMessage `json:"payload"`
		} `json:"data"`
	}
	if err := json.Unmarshal(golden, &wantSpine); err != nil {
		t.Fatal(err)
	}
	if w := compact(t, wantSpine.Data.Payload); !bytes.Equal(spine, w) {
		t.Errorf("FromEEBus(payload)\n got %s\nwant %s", spine, w)
	}
}
