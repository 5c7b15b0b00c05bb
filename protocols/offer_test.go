package protocols_test

import (
	"slices"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

func TestParseOffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		values  []string
		want    []string
		wantErr bool
	}{
		{name: "no header", values: nil, want: nil},
		{name: "empty header", values: []string{""}, want: nil},
		{name: "only separators", values: []string{" , ,\t,"}, want: nil},
		{name: "one name", values: []string{"done"}, want: []string{"done"}},
		{name: "seed example", values: []string{"ship, done"}, want: []string{"ship", "done"}},
		{name: "no space", values: []string{"ship,done"}, want: []string{"ship", "done"}},
		{name: "spaces and tabs", values: []string{" \tship \t,\t done\t "}, want: []string{"ship", "done"}},
		{name: "empty elements", values: []string{",,done,"}, want: []string{"done"}},
		{name: "empty elements between", values: []string{"ship,, ,done"}, want: []string{"ship", "done"}},
		{name: "duplicates keep first position", values: []string{"done, ship, done, ship"}, want: []string{"done", "ship"}},
		{name: "several header lines", values: []string{"ship", "done, x"}, want: []string{"ship", "done", "x"}},
		{name: "duplicate across header lines", values: []string{"done", "ship, done"}, want: []string{"done", "ship"}},
		{name: "empty line among lines", values: []string{"", "done", " "}, want: []string{"done"}},
		{name: "case is kept", values: []string{"DONE, done, Done"}, want: []string{"DONE", "done", "Done"}},
		{name: "unknown names are kept", values: []string{"mqtt, v12.stomp"}, want: []string{"mqtt", "v12.stomp"}},
		{name: "all tchar", values: []string{"!#$%&'*+-.^_`|~09azAZ"}, want: []string{"!#$%&'*+-.^_`|~09azAZ"}},
		{name: "inner space", values: []string{"ship done"}, wantErr: true},
		{name: "inner tab", values: []string{"ship\tdone"}, wantErr: true},
		{name: "slash", values: []string{"done/1"}, wantErr: true},
		{name: "quoted", values: []string{`"done"`}, wantErr: true},
		{name: "semicolon", values: []string{"done;q=1"}, wantErr: true},
		{name: "non-ASCII", values: []string{"dönë"}, wantErr: true},
		{name: "control character", values: []string{"do\x00ne"}, wantErr: true},
		{name: "newline", values: []string{"done\n"}, wantErr: true},
		{name: "invalid in later line", values: []string{"done", "ship, a=b"}, wantErr: true},
		{name: "invalid after valid", values: []string{"done, (ship)"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := protocols.ParseOffer(tt.values)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseOffer(%q) = %q, want an error", tt.values, got)
				}
				if got != nil {
					t.Errorf("ParseOffer(%q) returned names %q with its error", tt.values, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOffer(%q): %v", tt.values, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseOffer(%q) = %q, want %q", tt.values, got, tt.want)
			}
		})
	}
}

func TestIsToken(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"done", "ship", "v1.0", "a", "UPPER", "x-y_z", "!#$%&'*+-.^_`|~"} {
		if !protocols.IsToken(s) {
			t.Errorf("IsToken(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"", " ", "a b", "a,b", "a/b", "a;b", "(a)", "a=b", `"a"`, "a\tb", "é", "a\x7f", "[a]", "{a}", "a?", "a@b", "a:b", "a\\b"} {
		if protocols.IsToken(s) {
			t.Errorf("IsToken(%q) = true, want false", s)
		}
	}
}
