package done

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeMatchesEncodingJSON checks the hand-written decoder against
// encoding/json: for any JSON object, every field the decoder reads must
// have the value encoding/json gives it (or both must refuse it).
func FuzzDecodeMatchesEncodingJSON(f *testing.F) {
	for _, seed := range []string{
		`{"op":"pub","ch":"sensors/temp","data":{"t":21.5},"seq":7,"qos":1,"retain":true}`,
		`{"op":"hello","id":"k\u00e9y\"1","token":"a\\b\/c\n","model":"\ud83d\ude00","fw":"\ud800x"}`,
		`{"op":"res","id":"c1","ok":false,"error":"no","data":[1,{"x":"}"}]}`,
		`{"op":"pub","seq":18446744073709551615,"ts":-9223372036854775808,"qos":-1}`,
		`{"op":"pub","seq":null,"ok":null,"ch":null,"data":null}`,
		` { "op" : "bye" , "reason" : "" } `,
		`{"op":"pub","op":"res"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return // the gateway fails such text messages with 1007 before decoding
		}
		var m inbound
		err := decode(data, &m)
		if errors.Is(err, errSyntax) == json.Valid(data) {
			t.Fatalf("decode(%q) = %v, json.Valid = %v", data, err, json.Valid(data))
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(data, &fields) != nil {
			return // not an object: covered by FuzzDecode
		}
		for key, raw := range fields {
			switch key {
			case "op", "ch", "id", "token", "model", "fw", "error", "reason":
				var want *string
				jerr := json.Unmarshal(raw, &want)
				if (jerr != nil) != (err != nil) && jerr != nil {
					t.Fatalf("%s: encoding/json refuses %s (%v), decode accepts", key, raw, jerr)
				}
				if jerr != nil || err != nil {
					continue
				}
				got := map[string]string{"op": string(m.Op), "ch": string(m.Ch), "id": m.ID, "token": m.Token,
					"model": m.Model, "fw": m.FW, "error": m.Error, "reason": m.Reason}[key]
				if want != nil && got != *want {
					t.Fatalf("%s = %q, encoding/json says %q (input %s)", key, got, *want, data)
				}
			case "seq":
				var want *uint64
				jerr := json.Unmarshal(raw, &want)
				if jerr == nil && err == nil && want != nil && (m.Seq != *want || !m.HasSeq) {
					t.Fatalf("seq = %d, encoding/json says %d", m.Seq, *want)
				}
				if jerr != nil && err == nil {
					t.Fatalf("seq %s accepted, encoding/json refuses it: %v", raw, jerr)
				}
			case "ts", "qos":
				var want *int64
				jerr := json.Unmarshal(raw, &want)
				if jerr != nil && err == nil {
					t.Fatalf("%s %s accepted, encoding/json refuses it: %v", key, raw, jerr)
				}
				if jerr == nil && err == nil && want != nil {
					got := m.TS
					if key == "qos" {
						got = int64(m.QoS)
					}
					if got != *want {
						t.Fatalf("%s = %d, encoding/json says %d", key, got, *want)
					}
				}
			case "data":
				if err == nil && string(m.Data) != string(raw) && strconv.Quote(string(m.Data)) != strconv.Quote(string(raw)) {
					t.Fatalf("data = %s, want %s", m.Data, raw)
				}
			}
		}
	})
}

// syntaxCases are messages that json.Valid accepts (valid) or refuses, one
// or more for each rule of the JSON grammar.
var syntaxCases = []struct {
	in    string
	valid bool
}{
	// Objects and arrays.
	{`{}`, true},
	{` {} `, true},
	{"\t\r\n{\t\r\n\"op\"\t\r\n:\t\r\n\"pub\"\t\r\n}\t\r\n", true},
	{`{"a":[],"b":{},"c":[1,"x",{"d":null}],"e":[[]]}`, true},
	{`{"op":"pub","op":"res"}`, true},
	{``, false},
	{` `, false},
	{`{`, false},
	{`}`, false},
	{`{"a"}`, false},
	{`{"a" 1}`, false},
	{`{"a"::1}`, false},
	{`{"a":}`, false},
	{`{"a":1,}`, false},
	{`{"op":"pub",}`, false},
	{`{,}`, false},
	{`{,"a":1}`, false},
	{`{"a":1 "b":2}`, false},
	{`{"a":1,,"b":2}`, false},
	{`{a:1}`, false},
	{`{'a':1}`, false},
	{`{1:1}`, false},
	{`{"a":[1,]}`, false},
	{`{"a":[,1]}`, false},
	{`{"a":[1 2]}`, false},
	{`{"a":[}`, false},
	{`{"a":{]}`, false},
	{`{"a":{"b"}}`, false},
	{`{"a":{"b":1,}}`, false},
	{`{"a":[1]]}`, false},
	{`{"a":[[1]}`, false},
	{`[]`, true},
	{`[1,[2,[3]],{"a":[]}]`, true},
	{`[`, false},
	{`]`, false},
	{`[}`, false},
	{`[1,]`, false},
	{`[,]`, false},

	// Numbers.
	{`{"n":0}`, true},
	{`{"n":-0}`, true},
	{`{"n":123}`, true},
	{`{"n":-1.5e3}`, true},
	{`{"n":1E+5}`, true},
	{`{"n":1e-05}`, true},
	{`{"n":0.0e0}`, true},
	{`{"n":18446744073709551616e99999}`, true},
	{`{"n":01}`, false},
	{`{"n":-01}`, false},
	{`{"n":00}`, false},
	{`{"n":1.}`, false},
	{`{"n":.5}`, false},
	{`{"n":-}`, false},
	{`{"n":-.5}`, false},
	{`{"n":1e}`, false},
	{`{"n":1e+}`, false},
	{`{"n":1.e5}`, false},
	{`{"n":+1}`, false},
	{`{"n":0x1}`, false},
	{`{"n":1_000}`, false},
	{`{"n":NaN}`, false},
	{`{"n":Infinity}`, false},
	{`{"n":-Infinity}`, false},
	{`1`, true},
	{`-`, false},
	{`1e`, false},

	// Strings.
	{`{"s":""}`, true},
	{`{"s":"\"\\\/\b\f\n\r\t"}`, true},
	{`{"s":"\u00e9\uD83D\uDE00\ud800\uABCD"}`, true},
	{`{"s":"é ☃ 😀 \u007f"}`, true},
	{"{\"s\":\"\x7f\"}", true},
	{"{\"s\":\"\xff\"}", true}, // json.Valid does not check UTF-8
	{`{"s":"\x"}`, false},
	{`{"s":"\'"}`, false},
	{`{"s":"\a"}`, false},
	{`{"s":"\U00e9"}`, false},
	{`{"s":"\u00e"}`, false},
	{`{"s":"\u00eg"}`, false},
	{`{"s":"\u"}`, false},
	{`{"s":"\`, false},
	{`{"s":"\u00`, false},
	{`{"s":"abc`, false},
	{`{"s":"abc}`, false},
	{`{"s`, false},
	{"{\"s\":\"\x00\"}", false},
	{"{\"s\":\"\x1f\"}", false},
	{"{\"s\":\"a\tb\"}", false},
	{"{\"op\":\"pu\nb\"}", false},
	{"{\"a\x01\":1}", false},
	{`"x"`, true},
	{`"x`, false},

	// Literals.
	{`{"b":true,"c":false,"d":null}`, true},
	{`{"b":tru}`, false},
	{`{"b":nul}`, false},
	{`{"b":fals}`, false},
	{`{"b":True}`, false},
	{`{"b":nulll}`, false},
	{`{"b":truefalse}`, false},
	{`{"b":t}`, false},
	{`{"b":undefined}`, false},
	{`true`, true},
	{`null`, true},
	{`nul`, false},
	{`tru`, false},

	// Whitespace and what follows the value.
	{"\v{}", false},
	{"\f{}", false},
	{"\u00a0{}", false},
	{"\ufeff{}", false},
	{`{} x`, false},
	{`{"op":"pub"} x`, false},
	{`{"op":"pub"} {"op":"pub"}`, false},
	{`{}{}`, false},
	{`{},`, false},
	{"{}\x00", false},
	{"{\"a\":1}\xff", false},
	{`1 2`, false},
	{`[] x`, false},
	{`"x" "y"`, false},

	// A wrongly typed field does not hide a syntax error after it.
	{`{"seq":"x","a":}`, false},
	{`{"seq":"x"} x`, false},
	{`{"qos":true,"data":[1,]}`, false},
}

// nested returns n arrays, one in the other, as the value of an object's
// field when inObject, so that the nesting is n+1 deep.
func nested(n int, inObject bool) []byte {
	v := strings.Repeat(`[`, n) + strings.Repeat(`]`, n)
	if inObject {
		v = `{"data":` + v + `}`
	}
	return []byte(v)
}

// nestedObjects returns n objects, one in the other.
func nestedObjects(n int) []byte {
	return []byte(strings.Repeat(`{"a":`, n-1) + `{}` + strings.Repeat(`}`, n-1))
}

func TestDecodeSyntax(t *testing.T) {
	t.Parallel()
	for _, c := range syntaxCases {
		if json.Valid([]byte(c.in)) != c.valid {
			t.Errorf("json.Valid(%q) = %v, the table says %v", c.in, !c.valid, c.valid)
		}
		var m inbound
		if err := decode([]byte(c.in), &m); errors.Is(err, errSyntax) == c.valid {
			t.Errorf("decode(%q) = %v, want errSyntax: %v", c.in, err, !c.valid)
		}
	}
}

// TestDecodeDepth checks encoding/json's limit of 10000 nested arrays and
// objects, the message's own object included.
func TestDecodeDepth(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		in    []byte
		valid bool
	}{
		{"10000 arrays", nested(10000, false), true},
		{"10001 arrays", nested(10001, false), false},
		{"object and 9999 arrays", nested(9999, true), true},
		{"object and 10000 arrays", nested(10000, true), false},
		{"10000 objects", nestedObjects(10000), true},
		{"10001 objects", nestedObjects(10001), false},
	} {
		if json.Valid(c.in) != c.valid {
			t.Fatalf("%s: json.Valid = %v, want %v", c.name, !c.valid, c.valid)
		}
		var m inbound
		if err := decode(c.in, &m); errors.Is(err, errSyntax) == c.valid {
			t.Errorf("%s: decode = %v", c.name, err)
		}
	}
}

// TestDecodeStringBytes puts every byte value at every offset of the first
// two words of a string, where the scanner switches from reading eight
// bytes at a time to reading one.
func TestDecodeStringBytes(t *testing.T) {
	t.Parallel()
	var m inbound
	for n := range 18 {
		for c := range 256 {
			for _, tail := range []string{`"}`, `x"}`, `xxxxxxxxxx"}`} {
				in := []byte(`{"s":"` + strings.Repeat("a", n) + string([]byte{byte(c)}) + tail)
				if err := decode(in, &m); errors.Is(err, errSyntax) == json.Valid(in) {
					t.Fatalf("decode(%q) = %v, json.Valid = %v", in, err, json.Valid(in))
				}
			}
		}
	}
}

// TestDecodeErrorOrder: of several wrongly typed fields the first is
// reported, and only if the message is JSON.
func TestDecodeErrorOrder(t *testing.T) {
	t.Parallel()
	var m inbound
	err := decode([]byte(`{"seq":"x","qos":"y"}`), &m)
	if err == nil || errors.Is(err, errSyntax) || !strings.Contains(err.Error(), `"seq"`) {
		t.Errorf(`decode = %v, want an error for "seq"`, err)
	}
	for in, want := range map[string]string{
		`[{"op":"pub"}]`: "a message must be a JSON object, not an array",
		` "pub" `:        "a message must be a JSON object, not a string",
		`-1.5e3`:         "a message must be a JSON object, not a number",
		`null`:           "a message must be a JSON object, not null",
	} {
		if err := decode([]byte(in), &m); err == nil || err.Error() != want {
			t.Errorf("decode(%s) = %v, want %q", in, err, want)
		}
	}
}

// FuzzDecodeSyntaxMatchesValid checks that decode refuses as invalid JSON
// exactly what json.Valid refuses, for any bytes (the gateway only passes
// UTF-8, but json.Valid does not look at it either), and that valid JSON
// other than an object gets the plain error.
func FuzzDecodeSyntaxMatchesValid(f *testing.F) {
	for _, c := range syntaxCases {
		f.Add([]byte(c.in))
	}
	f.Add(typicalPub)
	f.Add(nested(10000, true))
	f.Add(nested(10001, false))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m inbound
		err := decode(data, &m)
		valid := json.Valid(data)
		if errors.Is(err, errSyntax) == valid {
			t.Fatalf("decode(%q) = %v, json.Valid = %v", data, err, valid)
		}
		if trimmed := bytes.TrimLeft(data, " \t\r\n"); valid && trimmed[0] != '{' &&
			(err == nil || !strings.HasPrefix(err.Error(), "a message must be a JSON object, not ")) {
			t.Fatalf("decode(%q) = %v, want the not-an-object error", data, err)
		}
	})
}
