package eebus

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// messages are typed SHIP messages and their exact EEBus bytes.
var messages = []struct {
	name string
	m    Message
	want string
}{
	{"hello ready", ConnectionHello{Phase: HelloReady, Waiting: ptr[uint32](60000)},
		`{"connectionHello":[{"phase":"ready"},{"waiting":60000}]}`},
	{"hello prolongation", ConnectionHello{Phase: HelloPending, ProlongationRequest: ptr(true)},
		`{"connectionHello":[{"phase":"pending"},{"prolongationRequest":true}]}`},
	{"hello aborted", ConnectionHello{Phase: HelloAborted}, `{"connectionHello":[{"phase":"aborted"}]}`},
	{"hello all fields", ConnectionHello{Phase: HelloPending, Waiting: ptr[uint32](0), ProlongationRequest: ptr(false)},
		`{"connectionHello":[{"phase":"pending"},{"waiting":0},{"prolongationRequest":false}]}`},
	{"announceMax", MessageProtocolHandshake{HandshakeType: HandshakeAnnounceMax, Version: Version{1, 0},
		Formats: Formats{Format: []Format{FormatJSONUTF8}}},
		`{"messageProtocolHandshake":[{"handshakeType":"announceMax"},{"version":[{"major":1},{"minor":0}]},{"formats":[{"format":["JSON-UTF8"]}]}]}`},
	{"select two formats", MessageProtocolHandshake{HandshakeType: HandshakeSelect, Version: Version{1, 1},
		Formats: Formats{Format: []Format{FormatJSONUTF8, FormatJSONUTF16}}},
		`{"messageProtocolHandshake":[{"handshakeType":"select"},{"version":[{"major":1},{"minor":1}]},{"formats":[{"format":["JSON-UTF8","JSON-UTF16"]}]}]}`},
	{"handshake no formats", MessageProtocolHandshake{HandshakeType: HandshakeSelect, Formats: Formats{Format: []Format{}}},
		`{"messageProtocolHandshake":[{"handshakeType":"select"},{"version":[{"major":0},{"minor":0}]},{"formats":[{"format":[]}]}]}`},
	{"handshake error", MessageProtocolHandshakeError{Error: HandshakeErrorUnexpectedMessage},
		`{"messageProtocolHandshakeError":[{"error":2}]}`},
	{"pin none", ConnectionPinState{PinState: PinNone}, `{"connectionPinState":[{"pinState":"none"}]}`},
	{"pin required busy", ConnectionPinState{PinState: PinRequired, InputPermission: ptr(PinInputBusy)},
		`{"connectionPinState":[{"pinState":"required"},{"inputPermission":"busy"}]}`},
	{"pin input", ConnectionPinInput{Pin: "0123456789abcdef"}, `{"connectionPinInput":[{"pin":"0123456789abcdef"}]}`},
	{"pin error", ConnectionPinError{Error: PinErrorWrongPin}, `{"connectionPinError":[{"error":1}]}`},
	{"access methods request", AccessMethodsRequest{}, `{"accessMethodsRequest":[]}`},
	{"access methods", AccessMethods{ID: ptr("SRV-Model-1")}, `{"accessMethods":[{"id":"SRV-Model-1"}]}`},
	{"access methods all", AccessMethods{ID: ptr("a\"b"), DNSSDmDNS: &DNSSDmDNS{}, DNS: &DNS{URI: "wss://h:4711/ship/"}},
		`{"accessMethods":[{"id":"a\"b"},{"dnsSd_mDns":[]},{"dns":[{"uri":"wss://h:4711/ship/"}]}]}`},
	{"access methods without id", AccessMethods{}, `{"accessMethods":[]}`},
	{"data", Data{Header: DataHeader{ProtocolID: ProtocolIDSPINE}, Payload: json.RawMessage(`{"datagram":[{"header":[{"msgCounter":1}]}]}`)},
		`{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":{"datagram":[{"header":[{"msgCounter":1}]}]}}]}`},
	{"data payload compacted", Data{Header: DataHeader{ProtocolID: "ee1.0"}, Payload: json.RawMessage(" {\n\"datagram\" : [ ]\n} ")},
		`{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":{"datagram":[]}}]}`},
	{"data extension", Data{Header: DataHeader{ProtocolID: "ee1.0"}, Payload: json.RawMessage(`{"datagram":[]}`),
		Extension: &Extension{ExtensionID: ptr("x"), Binary: ptr("00ff"), String: ptr("s")}},
		`{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":{"datagram":[]}},{"extension":[{"extensionId":"x"},{"binary":"00ff"},{"string":"s"}]}]}`},
	{"data without payload", Data{Header: DataHeader{ProtocolID: "ee1.0"}},
		`{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":null}]}`},
	{"close announce", ConnectionClose{Phase: CloseAnnounce, MaxTime: ptr[uint32](500), Reason: ptr(CloseRemovedConnection)},
		`{"connectionClose":[{"phase":"announce"},{"maxTime":500},{"reason":"removedConnection"}]}`},
	{"close confirm", ConnectionClose{Phase: CloseConfirm}, `{"connectionClose":[{"phase":"confirm"}]}`},
}

func TestMarshal(t *testing.T) {
	t.Parallel()
	for _, tc := range messages {
		got, err := Marshal(tc.m)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: Marshal\n got %s, %v\nwant %s", tc.name, got, err, tc.want)
		}
		// A pointer marshals the same.
		p := reflect.New(reflect.TypeOf(tc.m))
		p.Elem().Set(reflect.ValueOf(tc.m))
		if got, err := Marshal(p.Interface()); err != nil || string(got) != tc.want {
			t.Errorf("%s: Marshal(pointer) = %s, %v", tc.name, got, err)
		}
	}
}

func TestUnmarshal(t *testing.T) {
	t.Parallel()
	for _, tc := range messages {
		name, err := Peek([]byte(tc.want))
		if err != nil || name != tc.m.MessageName() {
			t.Errorf("%s: Peek = %q, %v", tc.name, name, err)
		}
		p := reflect.New(reflect.TypeOf(tc.m))
		if err := Unmarshal([]byte(tc.want), p.Interface()); err != nil {
			t.Errorf("%s: Unmarshal: %v", tc.name, err)
			continue
		}
		want := tc.m
		if d, ok := want.(Data); ok {
			// The payload comes back compact; a missing one as null.
			if d.Payload == nil {
				d.Payload = json.RawMessage("null")
			}
			d.Payload = compact(t, d.Payload)
			want = d
		}
		if got := p.Elem().Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Unmarshal\n got %#v\nwant %#v", tc.name, got, want)
		}
	}
}

func TestUnmarshalLayout(t *testing.T) {
	t.Parallel()
	var h ConnectionHello
	in := " { \"connectionHello\" : [ { \"phase\" : \"ready\" } ,\n{ \"waiting\" : 60000 } ] } "
	if err := Unmarshal([]byte(in), &h); err != nil || h.Phase != HelloReady || h.Waiting == nil || *h.Waiting != 60000 {
		t.Errorf("Unmarshal = %+v, %v", h, err)
	}
	var c ConnectionClose
	in = `{"connectionClose":[{"phase":"announce"},{"reason":"[{\"x\"},{\"y\"}]"}]}`
	if err := Unmarshal([]byte(in), &c); err != nil || c.Reason == nil || *c.Reason != `[{"x"},{"y"}]` {
		t.Errorf("Unmarshal = %+v, %v", c, err)
	}
	// Leniency: the plain form of an object, unknown elements, field order.
	var m MessageProtocolHandshake
	in = `{"messageProtocolHandshake":[{"formats":{"format":["JSON-UTF8"]}},{"future":[{"a":1}]},{"version":{"minor":1,"major":1}},{"handshakeType":"select"}]}`
	want := MessageProtocolHandshake{HandshakeType: HandshakeSelect, Version: Version{1, 1}, Formats: Formats{Format: []Format{FormatJSONUTF8}}}
	if err := Unmarshal([]byte(in), &m); err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("Unmarshal = %+v, %v", m, err)
	}
	// null leaves a value alone and clears a pointer.
	h = ConnectionHello{Phase: HelloReady, Waiting: ptr[uint32](1)}
	if err := Unmarshal([]byte(`{"connectionHello":[{"phase":null},{"waiting":null}]}`), &h); err != nil ||
		h.Phase != HelloReady || h.Waiting != nil {
		t.Errorf("Unmarshal null = %+v, %v", h, err)
	}
}

// TestUnmarshalHandshakeError accepts both forms section 6.3 describes.
func TestUnmarshalHandshakeError(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"messageProtocolHandshakeError":[{"error":2}]}`,
		`{"error":2}`,
		` { "error" : 2 } `,
		`{"messageProtocolHandshakeError":{"error":2}}`,
	} {
		name, err := Peek([]byte(in))
		if err != nil || name != NameMessageProtocolHandshakeError {
			t.Errorf("Peek(%s) = %q, %v", in, name, err)
		}
		var e MessageProtocolHandshakeError
		if err := Unmarshal([]byte(in), &e); err != nil || e.Error != HandshakeErrorUnexpectedMessage {
			t.Errorf("Unmarshal(%s) = %+v, %v", in, e, err)
		}
	}
	// Only the handshake error has an unwrapped form.
	var p ConnectionPinError
	if err := Unmarshal([]byte(`{"error":1}`), &p); !errors.Is(err, ErrWrongMessage) {
		t.Errorf("Unmarshal({error:1}) into ConnectionPinError: %v", err)
	}
}

// TestEmptyArrayTyped checks that the Go type resolves [].
func TestEmptyArrayTyped(t *testing.T) {
	t.Parallel()
	type address struct {
		Device string `json:"device,omitempty"`
		Entity []uint `json:"entity"`
	}
	type inner struct {
		A int `json:"a,omitempty"`
	}
	type target struct {
		Entity  []uint    `json:"entity"`
		Obj     inner     `json:"obj"`
		Ptr     *inner    `json:"ptr"`
		List    []inner   `json:"list"`
		Addr    *address  `json:"addr"`
		Fixed   [2]int    `json:"fixed"`
		Strings *[]string `json:"strings"`
	}
	var v target
	v.Fixed = [2]int{7, 7}
	in := `{"t":[{"entity":[]},{"obj":[]},{"ptr":[]},{"list":[[],[{"a":2}]]},{"addr":[{"entity":[]}]},{"fixed":[1]},{"strings":[]}]}`
	if err := Unmarshal([]byte(in), &struct {
		T *target `json:"t"`
	}{&v}); err != nil {
		t.Fatal(err)
	}
	want := target{
		Entity:  []uint{},
		Ptr:     &inner{},
		List:    []inner{{}, {A: 2}},
		Addr:    &address{Entity: []uint{}},
		Fixed:   [2]int{1, 0},
		Strings: &[]string{},
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("Unmarshal\n got %#v\nwant %#v", v, want)
	}
	// And back: empty lists and empty structs are both [].
	got, err := Marshal(struct {
		T target `json:"t"`
	}{v})
	if err != nil {
		t.Fatal(err)
	}
	if w := `{"t":[{"entity":[]},{"obj":[]},{"ptr":[]},{"list":[[],[{"a":2}]]},{"addr":[{"entity":[]}]},{"fixed":[1,0]},{"strings":[]}]}`; string(got) != w {
		t.Errorf("Marshal\n got %s\nwant %s", got, w)
	}
}

// spine stands in for the SPINE types that will use this codec: a
// root-style message and a datagram with lists of objects.
type spine struct {
	Datagram datagram `json:"datagram"`
}

type datagram struct {
	Header  spineHeader  `json:"header"`
	Payload spinePayload `json:"payload"`
}

type spineHeader struct {
	AddressSource *spineAddress `json:"addressSource,omitempty"`
	MsgCounter    *uint64       `json:"msgCounter,omitempty"`
	CmdClassifier string        `json:"cmdClassifier,omitempty"`
}

type spineAddress struct {
	Device  *string `json:"device,omitempty"`
	Entity  []uint  `json:"entity,omitempty"`
	Feature *uint   `json:"feature,omitempty"`
}

type spinePayload struct {
	Cmd []spineCmd `json:"cmd"`
}

type spineCmd struct {
	Discovery *struct{}  `json:"nodeManagementDetailedDiscoveryData,omitempty"`
	Measure   *measure   `json:"measurementListData,omitempty"`
	Any       any        `json:"any,omitempty"`
	When      *time.Time `json:"when,omitempty"`
}

type measure struct {
	Values []value `json:"measurementData"`
}

type value struct {
	ID    uint    `json:"measurementId"`
	Value float64 `json:"value"`
}

func TestRootStyle(t *testing.T) {
	t.Parallel()
	when := time.Date(2024, 10, 23, 12, 0, 0, 0, time.UTC)
	s := spine{Datagram: datagram{
		Header: spineHeader{
			AddressSource: &spineAddress{Device: ptr("d:_i:CLI"), Entity: []uint{1, 1}, Feature: ptr[uint](0)},
			MsgCounter:    ptr[uint64](1),
			CmdClassifier: "read",
		},
		Payload: spinePayload{Cmd: []spineCmd{
			{Discovery: &struct{}{}},
			{Measure: &measure{Values: []value{{1, 230.5}, {2, -1}}}},
			{When: &when},
		}},
	}}
	payload, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"datagram":[{"header":[{"addressSource":[{"device":"d:_i:CLI"},{"entity":[1,1]},{"feature":0}]},{"msgCounter":1},{"cmdClassifier":"read"}]},` +
		`{"payload":[{"cmd":[[{"nodeManagementDetailedDiscoveryData":[]}],[{"measurementListData":[{"measurementData":[[{"measurementId":1},{"value":230.5}],[{"measurementId":2},{"value":-1}]]}]}],[{"when":"2024-10-23T12:00:00Z"}]]}]}]}`
	if string(payload) != want {
		t.Fatalf("Marshal(spine)\n got %s\nwant %s", payload, want)
	}
	var back spine
	if err := Unmarshal(payload, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("Unmarshal\n got %#v\nwant %#v", back, s)
	}

	// Wrapped in a SHIP data message, the payload keeps its root form, and
	// the untyped path agrees with the typed one.
	msg, err := Marshal(Data{Header: DataHeader{ProtocolID: ProtocolIDSPINE}, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	if w := `{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":` + want + `}]}`; string(msg) != w {
		t.Errorf("Marshal(data) = %s", msg)
	}
	plain, err := FromEEBus(msg)
	if err != nil {
		t.Fatal(err)
	}
	var viaJSON struct {
		Data struct {
			Payload struct {
				Datagram struct {
					Header struct {
						AddressSource struct {
							Entity []uint `json:"entity"`
						} `json:"addressSource"`
					} `json:"header"`
				} `json:"datagram"`
			} `json:"payload"`
		} `json:"data"`
	}
	if err := json.Unmarshal(plain, &viaJSON); err != nil {
		t.Fatalf("plain %s: %v", plain, err)
	}
	if e := viaJSON.Data.Payload.Datagram.Header.AddressSource.Entity; !reflect.DeepEqual(e, []uint{1, 1}) {
		t.Errorf("entity via FromEEBus = %v (plain %s)", e, plain)
	}
	if back, err := ToEEBus(plain); err != nil || string(back) != string(msg) {
		t.Errorf("ToEEBus(FromEEBus(data)) = %s, %v", back, err)
	}

	// An empty interface gets the untyped conversion.
	var c spineCmd
	if err := Unmarshal([]byte(`{"x":[{"any":[{"a":[1,2]},{"b":[]}]}]}`), &struct {
		X *spineCmd `json:"x"`
	}{&c}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"a": []any{1.0, 2.0}, "b": map[string]any{}}; !reflect.DeepEqual(c.Any, want) {
		t.Errorf("any = %#v", c.Any)
	}
}

func TestMarshalErrors(t *testing.T) {
	t.Parallel()
	type twoFields struct {
		A int `json:"a"`
		B int `json:"b"`
	}
	type oneOmitted struct {
		A int `json:"a,omitempty"`
		B int `json:"b,omitempty"`
	}
	type withMap struct {
		M map[string]int `json:"m"`
	}
	type withFunc struct {
		F func() `json:"f"`
	}
	type withRaw struct {
		R json.RawMessage `json:"r"`
	}
	type withFloat struct {
		F float64 `json:"f"`
	}
	type cycle struct {
		Next *cycle `json:"next"`
	}
	loop := &cycle{}
	loop.Next = loop
	for _, tc := range []struct {
		name string
		v    any
		err  error
	}{
		{"nil", nil, ErrType},
		{"nil message", (*ConnectionHello)(nil), ErrType},
		{"nil struct pointer", (*twoFields)(nil), ErrType},
		{"not a struct", 42, ErrRoot},
		{"slice", []int{1}, ErrRoot},
		{"two fields", twoFields{}, ErrRoot},
		{"no field", oneOmitted{}, ErrRoot},
		{"map", withMap{M: map[string]int{"a": 1}}, ErrType},
		{"func", withFunc{F: func() {}}, ErrType},
		{"invalid raw", withRaw{R: json.RawMessage(`{"a":`)}, ErrSyntax},
		{"raw with duplicate", withRaw{R: json.RawMessage(`{"a":1,"a":2}`)}, ErrDuplicateKey},
		{"NaN", withFloat{F: nan()}, ErrType},
		{"cycle", loop, ErrType},
		{"message with bad payload", Data{Payload: json.RawMessage(`nope`)}, ErrSyntax},
	} {
		if got, err := Marshal(tc.v); !errors.Is(err, tc.err) {
			t.Errorf("%s: Marshal = %s, %v; want %v", tc.name, got, err, tc.err)
		}
	}
	// One present field is a root.
	if got, err := Marshal(oneOmitted{B: 2}); err != nil || string(got) != `{"b":2}` {
		t.Errorf("Marshal(oneOmitted) = %s, %v", got, err)
	}
	// Field names and omission follow encoding/json.
	type tags struct {
		Plain    int
		Skipped  int `json:"-"`
		private  int
		Zero     Version  `json:"zero,omitzero"`
		Empty    []int    `json:"empty,omitempty"`
		Nil      *int     `json:"nil"`
		Iface    any      `json:"iface"`
		Bytes    []byte   `json:"bytes"`
		Fixed    [2]uint8 `json:"fixed"`
		Unsigned uintptr  `json:"u,omitempty"`
	}
	got, err := Marshal(struct {
		T tags `json:"t"`
	}{tags{Plain: 1, Skipped: 2, private: 3, Iface: []any{"x", Version{Major: 1}}, Bytes: []byte("hi"), Fixed: [2]uint8{1, 2}}})
	if w := `{"t":[{"Plain":1},{"nil":null},{"iface":["x",[{"major":1},{"minor":0}]]},{"bytes":"aGk="},{"fixed":[1,2]}]}`; err != nil || string(got) != w {
		t.Errorf("Marshal(tags)\n got %s, %v\nwant %s", got, err, w)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		v    any
		err  error
	}{
		{"not a pointer", `{"connectionHello":[]}`, ConnectionHello{}, ErrType},
		{"nil pointer", `{"connectionHello":[]}`, (*ConnectionHello)(nil), ErrType},
		{"syntax", `{"connectionHello":[}`, new(ConnectionHello), ErrSyntax},
		{"root", `[{"connectionHello":[]}]`, new(ConnectionHello), ErrRoot},
		{"two roots", `{"connectionHello":[],"x":1}`, new(ConnectionHello), ErrRoot},
		{"wrong message", `{"connectionClose":[{"phase":"confirm"}]}`, new(ConnectionHello), ErrWrongMessage},
		{"string for number", `{"connectionHello":[{"waiting":"60000"}]}`, new(ConnectionHello), ErrType},
		{"negative", `{"connectionHello":[{"waiting":-1}]}`, new(ConnectionHello), ErrType},
		{"too big", `{"messageProtocolHandshake":[{"version":[{"major":256}]}]}`, new(MessageProtocolHandshake), ErrType},
		{"number for string", `{"connectionHello":[{"phase":1}]}`, new(ConnectionHello), ErrType},
		{"scalar for struct", `{"connectionHello":"ready"}`, new(ConnectionHello), ErrType},
		{"list for struct", `{"connectionHello":[["ready"]]}`, new(ConnectionHello), ErrType},
		{"multi-key element", `{"connectionHello":[{"phase":"ready","waiting":1}]}`, new(ConnectionHello), ErrType},
		{"object for list", `{"messageProtocolHandshake":[{"formats":[{"format":{"a":1}}]}]}`, new(MessageProtocolHandshake), ErrType},
		{"array for string", `{"connectionHello":[{"phase":[]}]}`, new(ConnectionHello), ErrType},
		{"duplicate field", `{"connectionHello":[{"phase":"ready"},{"phase":"pending"}]}`, new(ConnectionHello), ErrDuplicateKey},
		{"duplicate key", `{"connectionHello":{"phase":"ready","phase":"pending"}}`, new(ConnectionHello), ErrDuplicateKey},
		{"map target", `{"m":[{"a":1}]}`, new(struct {
			M map[string]int `json:"m"`
		}), ErrType},
	} {
		if err := Unmarshal([]byte(tc.in), tc.v); !errors.Is(err, tc.err) {
			t.Errorf("%s: Unmarshal(%s) = %v; want %v", tc.name, tc.in, err, tc.err)
		}
	}
	// The error says where.
	err := Unmarshal([]byte(`{"messageProtocolHandshake":[{"formats":[{"format":[1]}]}]}`), new(MessageProtocolHandshake))
	if err == nil || !strings.Contains(err.Error(), "messageProtocolHandshake.formats.format[0]") {
		t.Errorf("error without path: %v", err)
	}
}

func TestPeek(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{`{"connectionHello":[{"phase":"ready"}]}`, NameConnectionHello, nil},
		{` {"data" : []} `, NameData, nil},
		{`{"error":3}`, NameMessageProtocolHandshakeError, nil},
		{`{"unknownMessage":[]}`, "unknownMessage", nil},
		{`{"a\u0062":1}`, "ab", nil},
		{`{}`, "", ErrRoot},
		{`{"a":1,"b":2}`, "", ErrRoot},
		{`[]`, "", ErrRoot},
		{`{"a":`, "", ErrSyntax},
		{`{"a":{"b":1,"b":1}}`, "", ErrDuplicateKey},
	} {
		got, err := Peek([]byte(tc.in))
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Peek(%s) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestNewMessage(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		NameConnectionHello, NameMessageProtocolHandshake, NameMessageProtocolHandshakeError,
		NameConnectionPinState, NameConnectionPinInput, NameConnectionPinError,
		NameAccessMethodsRequest, NameAccessMethods, NameData, NameConnectionClose,
	} {
		m, ok := NewMessage(name)
		if !ok || m.MessageName() != name || reflect.ValueOf(m).Kind() != reflect.Pointer {
			t.Errorf("NewMessage(%q) = %#v, %v", name, m, ok)
			continue
		}
		want := TypeControl
		switch name {
		case NameData:
			want = TypeData
		case NameConnectionClose:
			want = TypeEnd
		}
		if got := m.MessageType(); got != want {
			t.Errorf("%s: MessageType %v, want %v", name, got, want)
		}
	}
	if m, ok := NewMessage("error"); ok {
		t.Errorf("NewMessage(error) = %#v", m)
	}
}
