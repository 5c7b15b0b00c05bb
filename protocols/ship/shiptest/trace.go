package shiptest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TraceLine is one SHIP message of a trace file.
type TraceLine struct {
	Where  string // file:line, the file's base name
	Sender string // "client" or "server"
	Msg    []byte // the whole message as on the wire
}

// ReadTrace reads the trace file at path (one of eebus/testdata's
// trace-*.txt): one SHIP message a line, "<sender> -> <type> <json>", or
// "<sender> -> 00 00" for the CMI, where sender is client or server; empty
// lines and lines that start with # are skipped. A line of another form
// fails the test.
func ReadTrace(t testing.TB, path string) []TraceLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := filepath.Base(path)
	var lines []TraceLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		where := name + ":" + strconv.Itoa(n)
		sender, msg, ok := strings.Cut(text, " -> ")
		if !ok || (sender != "client" && sender != "server") {
			t.Fatalf("%s: not '<client|server> -> message'", where)
		}
		if msg == "00 00" {
			lines = append(lines, TraceLine{Where: where, Sender: sender, Msg: slices.Clone(CMI)})
			continue
		}
		typ, body, ok := strings.Cut(msg, " ")
		b, err := strconv.ParseUint(typ, 10, 8)
		if !ok || err != nil {
			t.Fatalf("%s: bad message %q", where, msg)
		}
		lines = append(lines, TraceLine{Where: where, Sender: sender, Msg: message(byte(b), body)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// ReadPlainDatagram reads the plain JSON form of the traces' data message
// at path (eebus/testdata/data-plain.json) and returns its SPINE datagram,
// the data's payload, compact: what a router gets from that message, and
// what a spine command sends in it.
func ReadPlainDatagram(t testing.TB, path string) []byte {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Data struct {
			Payload json.RawMessage `json:"payload"`
		} `json:"data"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, d.Data.Payload); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b.Bytes()
}
