package eebus

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzFromEEBus feeds arbitrary bytes to both paths of the codec. Nothing
// may panic, errors must be the package's, and:
//
//   - untyped: when FromEEBus(x) succeeds with p, ToEEBus(p) succeeds with
//     e, and FromEEBus(e) is p again. x itself need not come back: [] in x
//     may have been an empty list, and x may spell an object in a
//     non-canonical way (as a plain object, say). But e is canonical: it is
//     a fixed point of ToEEBus(FromEEBus(.)). The same holds for whatever
//     ToEEBus makes of x read as plain JSON.
//   - typed: when x decodes into a SHIP message type, the value marshals,
//     and decoding and marshalling that again gives the same bytes.
//
// The corpus is testdata/fuzz/FuzzFromEEBus; the golden traces are added
// as seeds.
func FuzzFromEEBus(f *testing.F) {
	for _, l := range traces(f) {
		if l.t != TypeInit {
			f.Add(l.body)
		}
	}
	for _, p := range pairs {
		f.Add([]byte(p.eebus))
	}
	f.Fuzz(func(t *testing.T, x []byte) {
		p, err := FromEEBus(x)
		checkErr(t, "FromEEBus", x, err)
		valid := json.Valid(x)
		switch {
		case err == nil:
			if !json.Valid(p) {
				t.Fatalf("FromEEBus(%q) = %q, not JSON", x, p)
			}
			canonical(t, p)
		case !valid && !errors.Is(err, ErrSyntax):
			t.Fatalf("FromEEBus(%q) of invalid JSON: %v", x, err)
		case valid && errors.Is(err, ErrSyntax) && !strings.Contains(err.Error(), "nested deeper"):
			t.Fatalf("FromEEBus(%q) of valid JSON: %v", x, err)
		}
		if e, err := ToEEBus(x); err == nil {
			p, err := FromEEBus(e)
			if err != nil {
				t.Fatalf("ToEEBus(%q) = %q, which FromEEBus refuses: %v", x, e, err)
			}
			if e2 := canonical(t, p); !bytes.Equal(e2, e) {
				t.Fatalf("ToEEBus(%q) = %q is not a fixed point: %q", x, e, e2)
			}
		} else {
			checkErr(t, "ToEEBus", x, err)
		}

		name, perr := Peek(x)
		checkErr(t, "Peek", x, perr)
		for _, n := range []string{
			NameConnectionHello, NameMessageProtocolHandshake, NameMessageProtocolHandshakeError,
			NameConnectionPinState, NameConnectionPinInput, NameConnectionPinError,
			NameAccessMethodsRequest, NameAccessMethods, NameData, NameConnectionClose,
		} {
			m, _ := NewMessage(n)
			err := Unmarshal(x, m)
			if err != nil {
				if !errors.Is(err, ErrType) && !errors.Is(err, ErrWrongMessage) {
					checkErr(t, "Unmarshal", x, err)
				}
				continue
			}
			if name != n {
				t.Fatalf("Unmarshal(%q) into %s succeeds, Peek says %q (%v)", x, n, name, perr)
			}
			b1, err := Marshal(m)
			if err != nil {
				t.Fatalf("Marshal(%#v) after Unmarshal(%q): %v", m, x, err)
			}
			m2, _ := NewMessage(n)
			if err := Unmarshal(b1, m2); err != nil {
				t.Fatalf("Unmarshal(Marshal(Unmarshal(%q)) = %q): %v", x, b1, err)
			}
			if b2, err := Marshal(m2); err != nil || !bytes.Equal(b1, b2) {
				t.Fatalf("%s from %q: Marshal %q, then %q, %v", n, x, b1, b2, err)
			}
		}
	})
}

// canonical checks that the plain message p, a FromEEBus result, converts
// to EEBus form and back to itself, and that its EEBus form is a fixed
// point; it returns the EEBus form.
func canonical(t *testing.T, p []byte) []byte {
	t.Helper()
	e, err := ToEEBus(p)
	if err != nil {
		t.Fatalf("ToEEBus(%q) of a FromEEBus result: %v", p, err)
	}
	p2, err := FromEEBus(e)
	if err != nil || !bytes.Equal(p2, p) {
		t.Fatalf("FromEEBus(ToEEBus(p)) != p\n   p %q\n   e %q\n  p2 %q, %v", p, e, p2, err)
	}
	e2, err := ToEEBus(p2)
	if err != nil || !bytes.Equal(e2, e) {
		t.Fatalf("EEBus form %q is not a fixed point: %q, %v", e, e2, err)
	}
	return e
}

// checkErr fails unless err is nil or one of the codec's errors.
func checkErr(t *testing.T, what string, x []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, want := range []error{ErrSyntax, ErrRoot, ErrDuplicateKey} {
		if errors.Is(err, want) {
			return
		}
	}
	t.Fatalf("%s(%q): unexpected error %v", what, x, err)
}

// FuzzDecodeFrame feeds arbitrary bytes to Decode. It must not panic, fail
// only with ErrShortMessage or ErrUnknownType, return the type byte and a
// body that is the message minus its type byte and (for JSON types) minus
// leading and trailing NULs; and framing the body again must decode to the
// same, and give the message back when it had no NULs to remove. The corpus
// is testdata/fuzz/FuzzDecodeFrame.
func FuzzDecodeFrame(f *testing.F) {
	for _, l := range traces(f) {
		f.Add(l.frame())
		f.Add(append(l.frame(), 0))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		typ, body, err := Decode(msg)
		switch {
		case errors.Is(err, ErrShortMessage):
			if len(msg) >= 2 && (msg[0] == byte(TypeInit) || len(bytes.Trim(msg[1:], "\x00")) > 0) {
				t.Fatalf("Decode(%q): %v", msg, err)
			}
			return
		case err != nil && !errors.Is(err, ErrUnknownType):
			t.Fatalf("Decode(%q): unexpected error %v", msg, err)
		case errors.Is(err, ErrUnknownType) != (typ > TypeEnd):
			t.Fatalf("Decode(%q) = %v, %v", msg, typ, err)
		}
		if byte(typ) != msg[0] {
			t.Fatalf("Decode(%q): type %v", msg, typ)
		}
		want := msg[1:]
		if typ != TypeInit {
			want = bytes.Trim(want, "\x00")
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("Decode(%q): body %q, want %q", msg, body, want)
		}
		again := Encode(typ, body)
		typ2, body2, err2 := Decode(again)
		if typ2 != typ || !bytes.Equal(body2, body) || (err2 != nil) != (err != nil) {
			t.Fatalf("Decode(Encode(%v, %q)) = %v, %q, %v", typ, body, typ2, body2, err2)
		}
		if len(body) == len(msg)-1 && !bytes.Equal(again, msg) {
			t.Fatalf("Encode(Decode(%q)) = %q", msg, again)
		}
	})
}
