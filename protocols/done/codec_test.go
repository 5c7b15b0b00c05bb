package done

import (
	"encoding/json"
	"strconv"
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
		var fields map[string]json.RawMessage
		if json.Unmarshal(data, &fields) != nil {
			return // not an object: covered by FuzzDecode
		}
		var m inbound
		err := decode(data, &m)
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
