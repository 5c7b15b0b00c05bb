package discovery

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsgate/wsgate/protocols/ship/identity"
)

// FuzzParseTXT feeds TXT records (strings separated by '\n') to ParseTXT.
// The seed corpus is in testdata/fuzz/FuzzParseTXT. A record it accepts
// must satisfy every rule of ship.md section 8 and survive TXT/ParseTXT
// unchanged; one it rejects must say ErrInvalidTXT.
func FuzzParseTXT(f *testing.F) {
	f.Add(strings.Join(valid(""), "\n"))
	f.Fuzz(func(t *testing.T, in string) {
		svc, err := ParseTXT(strings.Split(in, "\n"))
		if err != nil {
			if !errors.Is(err, ErrInvalidTXT) {
				t.Fatalf("error %v is not ErrInvalidTXT", err)
			}
			return
		}
		if n, err := identity.NormalizeSKI(svc.SKI); err != nil || n != svc.SKI {
			t.Fatalf("accepted SKI %q is not normalised", svc.SKI)
		}
		if err := identity.ValidateSHIPID(svc.SHIPID); err != nil {
			t.Fatalf("accepted id: %v", err)
		}
		if err := validatePath(svc.Path); err != nil {
			t.Fatalf("accepted path: %v", err)
		}
		for _, v := range []string{svc.Brand, svc.Model, svc.Type, svc.Serial} {
			if len(v) > MaxValueLen || !utf8.ValidString(v) {
				t.Fatalf("optional value %q not cut to valid UTF-8", v)
			}
		}
		txt, err := svc.TXT()
		if err != nil {
			t.Fatalf("TXT() of an accepted record: %v", err)
		}
		again, err := ParseTXT(txt)
		if err != nil {
			t.Fatalf("ParseTXT(TXT()): %v", err)
		}
		if !reflect.DeepEqual(again, svc) {
			t.Fatalf("round trip changed the service:\n%+v\n%+v", svc, again)
		}
	})
}
