package eebus

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// spineOrderTest is a SPINE datagram in plain JSON with its keys in some
// publisher's order, and the same datagram with every key the schema table
// knows in XSD sequence order, written by hand.
type spineOrderTest struct {
	name       string
	plain, xsd string
}

// spineKnownTests hold only keys the table gives a place of their own, so
// that any order of their keys must give the same EEBus form.
var spineKnownTests = []spineOrderTest{
	// The envelope: every datagram has it.
	{
		name:  "datagram: payload before header",
		plain: `{"datagram":{"payload":{"cmd":[]},"header":{"msgCounter":1}}}`,
		xsd:   `{"datagram":{"header":{"msgCounter":1},"payload":{"cmd":[]}}}`,
	},
	{
		name: "header: all nine elements backwards",
		plain: `{"datagram":{"header":{"timestamp":"2024-10-23T19:09:15Z","ackRequest":true,"cmdClassifier":"call",` +
			`"msgCounterReference":6,"msgCounter":7,"addressOriginator":{"device":"d:_i:O"},` +
			`"addressDestination":{"device":"d:_i:D"},"addressSource":{"device":"d:_i:S"},"specificationVersion":"1.3.0"}}}`,
		xsd: `{"datagram":{"header":{"specificationVersion":"1.3.0","addressSource":{"device":"d:_i:S"},` +
			`"addressDestination":{"device":"d:_i:D"},"addressOriginator":{"device":"d:_i:O"},"msgCounter":7,` +
			`"msgCounterReference":6,"cmdClassifier":"call","ackRequest":true,"timestamp":"2024-10-23T19:09:15Z"}}}`,
	},
	{
		name: "feature addresses: device, entity, feature in other orders",
		plain: `{"datagram":{"header":{"addressSource":{"feature":2,"entity":[1,1],"device":"d:_i:S"},` +
			`"addressDestination":{"entity":[1],"feature":3,"device":"d:_i:D"},"addressOriginator":{"feature":0,"device":"d:_i:O","entity":[0]}}}}`,
		xsd: `{"datagram":{"header":{"addressSource":{"device":"d:_i:S","entity":[1,1],"feature":2},` +
			`"addressDestination":{"device":"d:_i:D","entity":[1],"feature":3},"addressOriginator":{"device":"d:_i:O","entity":[0],"feature":0}}}}`,
	},
	{
		name: "cmd: the function's data first, the leading elements last",
		plain: `{"datagram":{"payload":{"cmd":[{"lastUpdateAt":"PT1S","measurementListData":{},` +
			`"manufacturerSpecificExtension":"00ff","filter":[{"filterId":1}],"function":"measurementListData"}]}}}`,
		xsd: `{"datagram":{"payload":{"cmd":[{"function":"measurementListData","filter":[{"filterId":1}],` +
			`"measurementListData":{},"manufacturerSpecificExtension":"00ff","lastUpdateAt":"PT1S"}]}}}`,
	},
	{
		name: "cmd: every cmd of the payload",
		plain: `{"datagram":{"payload":{"cmd":[{"resultData":{"errorNumber":0},"function":"resultData"},` +
			`{"lastUpdateAt":"PT2S","deviceDiagnosisHeartbeatData":{"heartbeatCounter":4,"timestamp":"PT0S"}}]}}}`,
		xsd: `{"datagram":{"payload":{"cmd":[{"function":"resultData","resultData":{"errorNumber":0}},` +
			`{"deviceDiagnosisHeartbeatData":{"timestamp":"PT0S","heartbeatCounter":4},"lastUpdateAt":"PT2S"}]}}}`,
	},
	{
		name: "filter: elements, selectors, cmdControl, filterId",
		plain: `{"datagram":{"payload":{"cmd":[{"filter":[{"measurementDataElements":{"value":{}},` +
			`"measurementListDataSelectors":{"measurementId":1},"cmdControl":{"partial":{},"delete":{}},"filterId":1}]}]}}}`,
		xsd: `{"datagram":{"payload":{"cmd":[{"filter":[{"filterId":1,"cmdControl":{"delete":{},"partial":{}},` +
			`"measurementListDataSelectors":{"measurementId":1},"measurementDataElements":{"value":{}}}]}]}}}`,
	},

	// The data of functions the table has.
	{
		name: "measurementListData",
		plain: `{"datagram":{"payload":{"cmd":[{"measurementListData":{"measurementData":[` +
			`{"value":{"scale":-1,"number":2301},"valueType":"value","measurementId":1,"evaluationPeriod":{"endTime":"PT1S","startTime":"PT0S"}},` +
			`{"valueState":"normal","measurementId":2}]}}]}}}`,
		xsd: `{"datagram":{"payload":{"cmd":[{"measurementListData":{"measurementData":[` +
			`{"measurementId":1,"valueType":"value","value":{"number":2301,"scale":-1},"evaluationPeriod":{"startTime":"PT0S","endTime":"PT1S"}},` +
			`{"measurementId":2,"valueState":"normal"}]}}]}}}`,
	},
	{
		name: "loadControlLimitListData",
		plain: `{"datagram":{"payload":{"cmd":[{"loadControlLimitListData":{"loadControlLimitData":[` +
			`{"value":{"scale":0,"number":4200},"timePeriod":{"endTime":"PT2H"},"isLimitActive":true,"limitId":0}]}}]}}}`,
		xsd: `{"datagram":{"payload":{"cmd":[{"loadControlLimitListData":{"loadControlLimitData":[` +
			`{"limitId":0,"isLimitActive":true,"timePeriod":{"endTime":"PT2H"},"value":{"number":4200,"scale":0}}]}}]}}}`,
	},
	{
		name: "nodeManagementDetailedDiscoveryData",
		plain: `{"datagram":{"payload":{"cmd":[{"nodeManagementDetailedDiscoveryData":{` +
			`"featureInformation":[{"description":{"supportedFunction":[{"possibleOperations":{"write":{},"read":{}},"function":"measurementListData"}],` +
			`"role":"server","featureType":"Measurement","featureAddress":{"feature":1,"entity":[1],"device":"d:_i:D"}}}],` +
			`"entityInformation":[{"description":{"entityType":"EVSE","entityAddress":{"entity":[1],"device":"d:_i:D"}}}],` +
			`"deviceInformation":{"description":{"deviceType":"ChargingStation","deviceAddress":{"device":"d:_i:D"}}},` +
			`"specificationVersionList":{"specificationVersion":["1.3.0"]}}}]}}}`,
		xsd: `{"datagram":{"payload":{"cmd":[{"nodeManagementDetailedDiscoveryData":{` +
			`"specificationVersionList":{"specificationVersion":["1.3.0"]},` +
			`"deviceInformation":{"description":{"deviceAddress":{"device":"d:_i:D"},"deviceType":"ChargingStation"}},` +
			`"entityInformation":[{"description":{"entityAddress":{"device":"d:_i:D","entity":[1]},"entityType":"EVSE"}}],` +
			`"featureInformation":[{"description":{"featureAddress":{"device":"d:_i:D","entity":[1],"feature":1},"featureType":"Measurement",` +
			`"role":"server","supportedFunction":[{"function":"measurementListData","possibleOperations":{"read":{},"write":{}}}]}}]}}]}}}`,
	},
}

// spineUnknownTests hold what the table does not know, which keeps the
// publisher's order, after what it knows.
var spineUnknownTests = []spineOrderTest{
	{
		name:  "unknown header elements",
		plain: `{"datagram":{"header":{"zNew":1,"msgCounter":1,"aNew":2,"specificationVersion":"1.3.0"}}}`,
		xsd:   `{"datagram":{"header":{"specificationVersion":"1.3.0","msgCounter":1,"zNew":1,"aNew":2}}}`,
	},
	{
		name: "a function the table does not name: in the data's place, inside untouched",
		plain: `{"datagram":{"payload":{"cmd":[{"lastUpdateAt":"PT1S","hvacOverrunListData":{"z":1,"a":{"y":2,"b":3}},` +
			`"function":"hvacOverrunListData"}]}}}`,
		xsd: `{"datagram":{"payload":{"cmd":[{"function":"hvacOverrunListData","hvacOverrunListData":{"z":1,"a":{"y":2,"b":3}},` +
			`"lastUpdateAt":"PT1S"}]}}}`,
	},
	{
		name:  "selectors of a type the table does not have: untouched",
		plain: `{"datagram":{"payload":{"cmd":[{"filter":[{"measurementListDataSelectors":{"valueType":"value","measurementId":1},"filterId":1}]}]}}}`,
		xsd:   `{"datagram":{"payload":{"cmd":[{"filter":[{"filterId":1,"measurementListDataSelectors":{"valueType":"value","measurementId":1}}]}]}}}`,
	},
	{
		name:  "values of the wrong kind",
		plain: `{"datagram":{"payload":[{"cmd":"x","zz":1},2],"header":"h"}}`,
		xsd:   `{"datagram":{"header":"h","payload":[{"cmd":"x","zz":1},2]}}`,
	},
	{
		name:  "not a datagram",
		plain: `{"other":{"payload":{},"header":{"msgCounter":1,"specificationVersion":"1.3.0"}}}`,
		xsd:   `{"other":{"payload":{},"header":{"msgCounter":1,"specificationVersion":"1.3.0"}}}`,
	},
}

func TestSPINEToEEBus(t *testing.T) {
	t.Parallel()
	for _, tt := range slices.Concat(spineKnownTests, spineUnknownTests) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, err := ToEEBus([]byte(tt.xsd))
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range []string{tt.plain, tt.xsd} {
				got, err := SPINEToEEBus([]byte(in))
				if err != nil {
					t.Fatalf("SPINEToEEBus(%s): %v", in, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("SPINEToEEBus(%s)\n = %s\nwant %s", in, got, want)
				}
			}
		})
	}
}

// TestSPINEToEEBusTrace: section 10's datagram, published with its keys in
// another order, goes out as the trace's bytes.
func TestSPINEToEEBusTrace(t *testing.T) {
	t.Parallel()
	var want []byte
	for _, l := range traces(t) {
		if l.t == TypeData {
			var d Data
			if err := Unmarshal(l.body, &d); err != nil {
				t.Fatalf("%s: %v", l.where, err)
			}
			want = d.Payload
			break
		}
	}
	shuffled, err := os.ReadFile(filepath.Join("testdata", "datagram-shuffled.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := SPINEToEEBus(shuffled)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("SPINEToEEBus = %s\nwant the trace's %s", got, want)
	}
}

// TestSPINEOrderShuffled: whatever the order of the keys of a datagram all
// of whose keys the table places, the EEBus form is the same.
func TestSPINEOrderShuffled(t *testing.T) {
	t.Parallel()
	docs := [][]byte{tracePlainDatagram(t)}
	for _, tt := range spineKnownTests {
		docs = append(docs, []byte(tt.xsd))
	}
	for _, doc := range docs {
		want, err := ToEEBus(doc)
		if err != nil {
			t.Fatal(err)
		}
		for seed := range uint64(200) {
			shuffled := shuffle(t, doc, seed)
			got, err := SPINEToEEBus(shuffled)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("SPINEToEEBus(%s)\n = %s\nwant %s", shuffled, got, want)
			}
		}
	}
}

// FuzzSPINEToEEBus: for any input, SPINEToEEBus fails exactly when
// ToEEBus does, and otherwise equals ToEEBus of the reordered plain JSON;
// the reordering loses and changes nothing but the order of keys, and
// reordering again changes nothing.
func FuzzSPINEToEEBus(f *testing.F) {
	f.Add(tracePlainDatagram(f))
	for _, tt := range slices.Concat(spineKnownTests, spineUnknownTests) {
		f.Add([]byte(tt.plain))
		f.Add(shuffle(f, []byte(tt.xsd), 1))
	}
	f.Fuzz(func(t *testing.T, x []byte) {
		got, err := SPINEToEEBus(x)
		_, perr := ToEEBus(x)
		if (err == nil) != (perr == nil) {
			t.Fatalf("SPINEToEEBus(%q): %v, ToEEBus: %v", x, err, perr)
		}
		if err != nil {
			checkErr(t, "SPINEToEEBus", x, err)
			return
		}
		ordered := orderedPlain(t, x)
		if !sameJSON(t, ordered, x) {
			t.Fatalf("reordering %q gave %q", x, ordered)
		}
		if again := orderedPlain(t, ordered); !bytes.Equal(again, ordered) {
			t.Fatalf("reordering is not idempotent: %q, then %q", ordered, again)
		}
		want, err := ToEEBus(ordered)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("SPINEToEEBus(%q) = %q, ToEEBus of the reordered = %q, %v", x, got, want, err)
		}
	})
}

func TestParseSchema(t *testing.T) {
	t.Parallel()
	for _, table := range []string{
		"A = b:B",         // B undefined
		"A = b\nA = c",    // defined twice
		"A = b b",         // element twice
		"A = *x:B\nB = c", // typed pattern
		"A = b:\n",        // type missing
		"  b c",           // continuation first
		"A b c",           // no "="
		"A B = c",         // two names
		"# comment\n= b",  // no name
	} {
		if _, err := parseSchema(table); err == nil {
			t.Errorf("parseSchema(%q) accepted", table)
		}
	}
	types, err := parseSchema("# c\nA = b *S c:C\n\td\nC = e")
	if err != nil {
		t.Fatal(err)
	}
	a := types["A"]
	for name, want := range map[string]int{"b": 0, "xS": 1, "c": 2, "d": 3, "other": 4} {
		if got := a.position(name); got != want {
			t.Errorf("position(%q) = %d, want %d", name, got, want)
		}
	}
	if a.types["c"] != types["C"] || a.types["b"] != nil {
		t.Errorf("element types %v", a.types)
	}
}

// tracePlainDatagram is the SPINE datagram of section 10's data message in
// plain JSON, in XSD order.
func tracePlainDatagram(t testing.TB) []byte {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("testdata", "data-plain.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Data struct {
			Payload json.RawMessage `json:"payload"`
		} `json:"data"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	return compact(t, d.Data.Payload)
}

// shuffle returns doc with the keys of every object in a random order
// drawn from seed.
func shuffle(t testing.TB, doc []byte, seed uint64) []byte {
	t.Helper()
	n, err := parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 0))
	var walk func(*node)
	walk = func(n *node) {
		r.Shuffle(len(n.members), func(i, j int) { n.members[i], n.members[j] = n.members[j], n.members[i] })
		for _, m := range n.members {
			walk(m.val)
		}
		for _, e := range n.elems {
			walk(e)
		}
	}
	walk(n)
	return n.appendTo(nil)
}

// orderedPlain is x, a message SPINEToEEBus accepts, with its keys in the
// order SPINEToEEBus puts them, still in plain JSON.
func orderedPlain(t *testing.T, x []byte) []byte {
	t.Helper()
	root, err := parseRoot(x)
	if err != nil {
		t.Fatal(err)
	}
	orderSPINE(root)
	return root.appendTo(nil)
}

// sameJSON reports whether a and b hold the same JSON, whatever the order
// of their keys; numbers are compared as written.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(data []byte) any {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}
