package eebus

import (
	"errors"
	"strings"
	"testing"
)

// pairs are messages whose plain and EEBus forms convert into each other
// exactly, in both directions, except that FromEEBus makes {} of the empty
// lists of the plain forms named in emptyList.
var pairs = []struct {
	name, plain, eebus string
}{
	{"rule 1", `{"connectionHello":{"phase":"ready","waiting":60000}}`,
		`{"connectionHello":[{"phase":"ready"},{"waiting":60000}]}`},
	{"rule 1 keeps key order", `{"m":{"z":1,"a":2,"m":3}}`,
		`{"m":[{"z":1},{"a":2},{"m":3}]}`},
	{"rule 2 scalar root", `{"error":2}`, `{"error":2}`},
	{"rule 3 list of objects", `{"x":{"cmd":[{"a":1,"b":2},{"c":3}]}}`,
		`{"x":[{"cmd":[[{"a":1},{"b":2}],[{"c":3}]]}]}`},
	{"rule 3 scalar list", `{"addr":{"device":"d","entity":[1,1],"feature":0}}`,
		`{"addr":[{"device":"d"},{"entity":[1,1]},{"feature":0}]}`},
	{"rule 3 string list", `{"formats":{"format":["JSON-UTF8","JSON-UTF16"]}}`,
		`{"formats":[{"format":["JSON-UTF8","JSON-UTF16"]}]}`},
	{"rule 3 mixed scalars", `{"l":[1,"a",true,null,-2.5e3]}`, `{"l":[1,"a",true,null,-2.5e3]}`},
	{"rule 4 empty root", `{"accessMethodsRequest":{}}`, `{"accessMethodsRequest":[]}`},
	{"rule 4 nested", `{"cmd":[{"nodeManagementDetailedDiscoveryData":{}}]}`,
		`{"cmd":[[{"nodeManagementDetailedDiscoveryData":[]}]]}`},
	{"rule 4 list of empty objects", `{"l":[{},{}]}`, `{"l":[[],[]]}`},
	{"nested lists of objects", `{"a":{"b":[{"c":[{"d":1},{"d":2}]},{"c":[]}]}}`,
		`{"a":[{"b":[[{"c":[[{"d":1}],[{"d":2}]]}],[{"c":[]}]]}]}`},
	{"rule 5", `{"data":{"header":{"protocolId":"ee1.0"},"payload":{"datagram":{"header":{"msgCounter":1},"payload":{"cmd":[{"x":{}}]}}}}}`,
		`{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":{"datagram":[{"header":[{"msgCounter":1}]},{"payload":[{"cmd":[[{"x":[]}]]}]}]}}]}`},
	{"rule 5 any one-key payload", `{"data":{"payload":{"other":{"a":1}}}}`,
		`{"data":[{"payload":{"other":[{"a":1}]}}]}`},
	{"rule 5 needs one key", `{"data":{"payload":{"a":1,"b":2}}}`,
		`{"data":[{"payload":[{"a":1},{"b":2}]}]}`},
	{"rule 5 empty payload", `{"data":{"payload":{}}}`, `{"data":[{"payload":[]}]}`},
	{"rule 5 scalar payload", `{"data":{"payload":"x"}}`, `{"data":[{"payload":"x"}]}`},
	{"strings that look like structure", `{"s":{"a":"[{","b":"},{","c":"}]","d":"[]","e":"{\"x\":[{\"y\":1}]}"}}`,
		`{"s":[{"a":"[{"},{"b":"},{"},{"c":"}]"},{"d":"[]"},{"e":"{\"x\":[{\"y\":1}]}"}]}`},
	{"keys that look like structure", `{"s":{"[{":1,"},{":{"}]":[]}}}`, `{"s":[{"[{":1},{"},{":[{"}]":[]}]}]}`},
	{"escapes kept as written", `{"s":{"a":"\u00e9\/\n","\u0062":"é"}}`, `{"s":[{"a":"\u00e9\/\n"},{"\u0062":"é"}]}`},
	{"numbers kept as written", `{"n":{"a":1.50,"b":1E3,"c":-0,"d":123456789012345678901234567890}}`,
		`{"n":[{"a":1.50},{"b":1E3},{"c":-0},{"d":123456789012345678901234567890}]}`},
	{"null", `{"n":{"a":null}}`, `{"n":[{"a":null}]}`},
}

// emptyList names the pairs whose plain form has a real empty list.
var emptyList = map[string]bool{"nested lists of objects": true, "keys that look like structure": true}

func TestToEEBus(t *testing.T) {
	t.Parallel()
	for _, tc := range pairs {
		got, err := ToEEBus([]byte(tc.plain))
		if err != nil || string(got) != tc.eebus {
			t.Errorf("%s: ToEEBus(%s)\n got %s, %v\nwant %s", tc.name, tc.plain, got, err, tc.eebus)
		}
	}
}

func TestFromEEBus(t *testing.T) {
	t.Parallel()
	for _, tc := range pairs {
		want := tc.plain
		if emptyList[tc.name] {
			want = strings.ReplaceAll(want, ":[]", ":{}") // see TestEmptyArrayUntyped
		}
		got, err := FromEEBus([]byte(tc.eebus))
		if err != nil || string(got) != want {
			t.Errorf("%s: FromEEBus(%s)\n got %s, %v\nwant %s", tc.name, tc.eebus, got, err, want)
		}
	}
}

// TestFromEEBusLayout checks what textual replacement gets wrong:
// whitespace anywhere between tokens, and values a string search would
// take for structure.
func TestFromEEBusLayout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"spaces", `{ "connectionHello" : [ { "phase" : "ready" } , { "waiting" : 60000 } ] }`,
			`{"connectionHello":{"phase":"ready","waiting":60000}}`},
		{"newlines and tabs", "{\n\t\"a\":[\r\n{\"b\":[\n1,\t2]}\n,\n{\"c\":[ ]}]}\n",
			`{"a":{"b":[1,2],"c":{}}}`},
		{"space in empty array", `{"accessMethodsRequest":[ ]}`, `{"accessMethodsRequest":{}}`},
		{"list of objects with spaces", `{"cmd":[ [ {"a":1} ] , [ {"b":2} , {"c":3} ] ]}`,
			`{"cmd":[{"a":1},{"b":2,"c":3}]}`},
		{"string with sequences", `{"m":[{"reason":"[{\"a\"},{\"b\"}]"},{"x":"[]"}]}`,
			`{"m":{"reason":"[{\"a\"},{\"b\"}]","x":"[]"}}`},
		{"string with closing sequence", `{"m":[{"s":"}]"},{"t":"},{"}]}`, `{"m":{"s":"}]","t":"},{"}}`},
		{"escaped quote before bracket", `{"m":[{"s":"\"}]"}]}`, `{"m":{"s":"\"}]"}}`},
		{"escaped backslash before quote", `{"m":[{"s":"\\"},{"t":"[{"}]}`, `{"m":{"s":"\\","t":"[{"}}`},
		{"scalar list", `{"e":[{"entity":[1,1]},{"format":["JSON-UTF8"]}]}`, `{"e":{"entity":[1,1],"format":["JSON-UTF8"]}}`},
		{"list of strings that look like objects", `{"l":[{"f":["{\"a\":1}","[{"]}]}`, `{"l":{"f":["{\"a\":1}","[{"]}}`},
		{"root-form object kept", `{"data":[{"payload":{"datagram":[{"a":1}]}}]}`,
			`{"data":{"payload":{"datagram":{"a":1}}}}`},
		{"multi-key object kept", `{"x":[{"o":{"a":[{"b":1}],"c":2}}]}`, `{"x":{"o":{"a":{"b":1},"c":2}}}`},
		{"mixed list", `{"l":[1,{"a":[{"b":1}]},[{"c":2}]]}`, `{"l":[1,{"a":{"b":1}},{"c":2}]}`},
		{"list with a multi-key object", `{"l":[{"a":1},{"b":2,"c":3}]}`, `{"l":[{"a":1},{"b":2,"c":3}]}`},
		{"list of empty objects", `{"l":[{}]}`, `{"l":[{}]}`},
		{"scalar root", `{"error":2}`, `{"error":2}`},
		{"object root value", `{"x":{"a":[]}}`, `{"x":{"a":{}}}`},
		{"leading and trailing space", " \n{\"a\":1} \t", `{"a":1}`},
	} {
		got, err := FromEEBus([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: FromEEBus(%s)\n got %s, %v\nwant %s", tc.name, tc.in, got, err, tc.want)
		}
	}
}

func TestToEEBusLayout(t *testing.T) {
	t.Parallel()
	in := "{ \"connectionHello\" :\n { \"phase\" : \"ready\" ,\t\"waiting\": 60000 } }\n"
	want := `{"connectionHello":[{"phase":"ready"},{"waiting":60000}]}`
	if got, err := ToEEBus([]byte(in)); err != nil || string(got) != want {
		t.Errorf("ToEEBus = %s, %v; want %s", got, err, want)
	}
	// Rule 5 goes by the decoded names and only applies at its place.
	for _, tc := range []struct{ name, in, want string }{
		{"escaped names", `{"d\u0061ta":{"p\u0061yload":{"datagram":{"a":1}}}}`,
			`{"d\u0061ta":[{"p\u0061yload":{"datagram":[{"a":1}]}}]}`},
		{"payload outside data", `{"datagram":{"payload":{"cmd":{"a":1}}}}`,
			`{"datagram":[{"payload":[{"cmd":[{"a":1}]}]}]}`},
		{"payload deeper in data", `{"data":{"x":{"payload":{"datagram":{}}}}}`,
			`{"data":[{"x":[{"payload":[{"datagram":[]}]}]}]}`},
		{"data not at the root", `{"m":{"data":{"payload":{"datagram":{}}}}}`,
			`{"m":[{"data":[{"payload":[{"datagram":[]}]}]}]}`},
	} {
		got, err := ToEEBus([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: ToEEBus(%s)\n got %s, %v\nwant %s", tc.name, tc.in, got, err, tc.want)
		}
	}
}

// TestEmptyArrayUntyped pins the untyped rule for []: it is an empty object,
// also where the plain form had an empty list.
func TestEmptyArrayUntyped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"accessMethodsRequest":[]}`, `{"accessMethodsRequest":{}}`},
		{`{"a":[{"entity":[]}]}`, `{"a":{"entity":{}}}`}, // was an empty list: the documented price
		{`{"a":[[]]}`, `{"a":[{}]}`},
		{`{"a":[[],[{"b":[]}]]}`, `{"a":[{},{"b":{}}]}`},
	} {
		got, err := FromEEBus([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("FromEEBus(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	// Both empties go to [], so the EEBus form round-trips all the same.
	for _, plain := range []string{`{"a":{"entity":[]}}`, `{"a":{"entity":{}}}`} {
		got, err := ToEEBus([]byte(plain))
		if err != nil || string(got) != `{"a":[{"entity":[]}]}` {
			t.Errorf("ToEEBus(%s) = %s, %v", plain, got, err)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in  string
		err error
	}{
		{``, ErrSyntax},
		{` `, ErrSyntax},
		{`{`, ErrSyntax},
		{`{"a":[{"b":1}]`, ErrSyntax},
		{`{"a":[{"b":1},]}`, ErrSyntax},
		{`{"a":1}{"b":2}`, ErrSyntax},
		{`{"a":'x'}`, ErrSyntax},
		{`{"a":"` + "\x00" + `"}`, ErrSyntax},
		{"\x00" + `{"a":1}`, ErrSyntax}, // NULs are Decode's business
		{strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2), ErrSyntax},
		{`{"a":` + strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2) + `}`, ErrSyntax},
		{`[]`, ErrRoot},
		{`"x"`, ErrRoot},
		{`null`, ErrRoot},
		{`{}`, ErrRoot},
		{`{"a":1,"b":2}`, ErrRoot},
		{`{"a":{"b":1,"b":2}}`, ErrDuplicateKey},
		{`{"a":{"b":1,"\u0062":2}}`, ErrDuplicateKey},
		{`{"a":{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k3":1}}`, ErrDuplicateKey},
	} {
		for name, f := range map[string]func([]byte) ([]byte, error){"ToEEBus": ToEEBus, "FromEEBus": FromEEBus} {
			got, err := f([]byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Errorf("%s(%.40q) = %s, %v; want %v", name, tc.in, got, err, tc.err)
			}
		}
	}
	// An encoded object cannot repeat a key: a repeated element is a list.
	for _, in := range []string{
		`{"a":[{"b":1},{"b":2}]}`,
		`{"a":[{"b":1},{"\u0062":2}]}`,
		`{"a":[{"k1":1},{"k2":1},{"k3":1},{"k4":1},{"k5":1},{"k6":1},{"k7":1},{"k8":1},{"k9":1},{"k1":1}]}`,
		`{"a":[[{"b":1},{"b":2}]]}`,
	} {
		if got, err := FromEEBus([]byte(in)); !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("FromEEBus(%s) = %s, %v; want ErrDuplicateKey", in, got, err)
		}
	}
}
