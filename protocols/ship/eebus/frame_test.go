package eebus

import (
	"bytes"
	"errors"
	"testing"
)

func TestEncode(t *testing.T) {
	t.Parallel()
	if got := Encode(TypeInit, []byte{0}); !bytes.Equal(got, []byte{0, 0}) {
		t.Errorf("CMI = % x", got)
	}
	if got := CMI(); !bytes.Equal(got, []byte{0, 0}) {
		t.Errorf("CMI() = % x", got)
	}
	body := []byte(`{"connectionHello":[{"phase":"ready"}]}`)
	got := Encode(TypeControl, body)
	if got[0] != 0x01 || !bytes.Equal(got[1:], body) {
		t.Errorf("Encode = %q", got)
	}
	body[0] = 'x'
	if got[1] != '{' {
		t.Error("Encode shares memory with body")
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	hello := `{"connectionHello":[{"phase":"ready"}]}`
	for _, tc := range []struct {
		name string
		msg  string
		typ  MessageType
		body string
		err  error
	}{
		{"cmi", "\x00\x00", TypeInit, "\x00", nil},
		{"init keeps NULs", "\x00\x00\x00", TypeInit, "\x00\x00", nil},
		{"control", "\x01" + hello, TypeControl, hello, nil},
		{"data", "\x02" + `{"data":[]}`, TypeData, `{"data":[]}`, nil},
		{"end", "\x03" + `{"connectionClose":[{"phase":"confirm"}]}`, TypeEnd, `{"connectionClose":[{"phase":"confirm"}]}`, nil},
		{"trailing NUL", "\x01" + hello + "\x00", TypeControl, hello, nil},
		{"trailing NULs", "\x01" + hello + "\x00\x00\x00", TypeControl, hello, nil},
		{"leading NUL", "\x01\x00" + hello, TypeControl, hello, nil},
		{"both", "\x02\x00\x00" + hello + "\x00", TypeData, hello, nil},
		{"inner NUL kept", "\x01{\x00}\x00", TypeControl, "{\x00}", nil},
		{"whitespace kept", "\x01 " + hello + "\n", TypeControl, " " + hello + "\n", nil},
		{"empty", "", 0, "", ErrShortMessage},
		{"type only", "\x01", 0, "", ErrShortMessage},
		{"init type only", "\x00", 0, "", ErrShortMessage},
		{"only NULs", "\x01\x00\x00", TypeControl, "", ErrShortMessage},
		{"unknown type", "\x04{}\x00", 4, "{}", ErrUnknownType},
		{"type 0xff", "\xff{}", 0xff, "{}", ErrUnknownType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			typ, body, err := Decode([]byte(tc.msg))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if typ != tc.typ || string(body) != tc.body {
				t.Errorf("Decode(%q) = %v, %q; want %v, %q", tc.msg, typ, body, tc.typ, tc.body)
			}
		})
	}
}

func TestMessageTypeString(t *testing.T) {
	t.Parallel()
	for typ, want := range map[MessageType]string{
		TypeInit: "init", TypeControl: "control", TypeData: "data", TypeEnd: "end", 7: "MessageType(0x07)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%d: %q, want %q", byte(typ), got, want)
		}
	}
}
