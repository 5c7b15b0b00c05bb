package eebus

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/wsgate/wsgate/protocols/ship/shiptest"
)

// traceLine is one SHIP message of a golden trace.
type traceLine struct {
	where string // file:line
	t     MessageType
	body  []byte // EEBus JSON; the CMI head for TypeInit
}

// frame is the message as it went over the wire.
func (l traceLine) frame() []byte { return Encode(l.t, l.body) }

// traces is every SHIP message of both golden traces.
func traces(t testing.TB) []traceLine {
	t.Helper()
	var lines []traceLine
	for _, name := range []string{"trace-autoaccept.txt", "trace-pending.txt"} {
		for _, l := range shiptest.ReadTrace(t, filepath.Join("testdata", name)) {
			lines = append(lines, traceLine{where: l.Where, t: MessageType(l.Msg[0]), body: l.Msg[1:]})
		}
	}
	return lines
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
	if w := shiptest.ReadPlainDatagram(t, filepath.Join("testdata", "data-plain.json")); !bytes.Equal(spine, w) {
		t.Errorf("FromEEBus(payload)\n got %s\nwant %s", spine, w)
	}
}
