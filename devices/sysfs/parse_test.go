package sysfs

import (
	"encoding/json"
	"errors"
	"testing"
)

const (
	w1Good = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
	w1Bad  = "72 01 4b 46 7f ff 0e 10 57 : crc=a3 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
	// 85 °C: the power-on reset value, valid per the datasheet.
	w1PowerOn = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
	w1Frost   = "ec ff 4b 46 7f ff 0c 10 5e : crc=5e YES\nec ff 4b 46 7f ff 0c 10 5e t=-1250\n"
)

func TestParsers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		parser        string
		scale, offset float64
		in            string
		want          string // payload, or the error when wantErr
		wantErr       bool
		wantCRC       bool
	}{
		{name: "raw trims", parser: ParserRaw, in: "  on battery\n", want: `"on battery"`},
		{name: "raw empty", parser: ParserRaw, in: "\n", want: `""`},
		{name: "raw escapes", parser: ParserRaw, in: `a "quoted" \ value`, want: `"a \"quoted\" \\ value"`},
		{name: "number", parser: ParserNumber, in: "1013.25\n", want: `1013.25`},
		{name: "number integer", parser: ParserNumber, in: "42", want: `42`},
		{name: "number negative", parser: ParserNumber, in: "-3.5", want: `-3.5`},
		{name: "number scaled", parser: ParserNumber, scale: 0.001, in: "48312", want: `48.312`},
		{name: "number offset", parser: ParserNumber, scale: 1, offset: -273.15, in: "300", want: `26.85`},
		{name: "number float noise rounded", parser: ParserNumber, scale: 0.1, in: "3", want: `0.3`},
		{name: "number not a number", parser: ParserNumber, in: "abc", want: `"abc" is not a number`, wantErr: true},
		{name: "number NaN", parser: ParserNumber, in: "NaN", want: `"NaN" is not a number`, wantErr: true},
		{name: "number Inf", parser: ParserNumber, in: "+Inf", want: `"+Inf" is not a number`, wantErr: true},
		{name: "number empty", parser: ParserNumber, in: "", want: `"" is not a number`, wantErr: true},
		{name: "thermal", parser: ParserThermal, in: "48312\n", want: `{"celsius":48.312}`},
		{name: "thermal whole degrees", parser: ParserThermal, in: "50000", want: `{"celsius":50}`},
		{name: "thermal below zero", parser: ParserThermal, in: "-5500", want: `{"celsius":-5.5}`},
		{name: "thermal decimal", parser: ParserThermal, in: "48.3", want: `"48.3" is not integer millidegrees`, wantErr: true},
		{name: "w1 good", parser: ParserW1Slave, in: w1Good, want: `{"celsius":23.125}`},
		{name: "w1 power-on value published", parser: ParserW1Slave, in: w1PowerOn, want: `{"celsius":85}`},
		{name: "w1 below zero", parser: ParserW1Slave, in: w1Frost, want: `{"celsius":-1.25}`},
		{name: "w1 bad crc", parser: ParserW1Slave, in: w1Bad, wantCRC: true},
		{name: "w1 one line", parser: ParserW1Slave, in: "72 01 : crc=57 YES\n", want: `want two lines (crc and t=), got "72 01 : crc=57 YES\n"`, wantErr: true},
		{name: "w1 no crc", parser: ParserW1Slave, in: "72 01 4b\n72 01 4b t=1000\n", want: `first line "72 01 4b" has no crc=`, wantErr: true},
		{name: "w1 crc verdict missing", parser: ParserW1Slave, in: "72 01 : crc=57\n72 01 t=1000\n", want: `first line "72 01 : crc=57" ends in neither YES nor NO`, wantErr: true},
		{name: "w1 no t=", parser: ParserW1Slave, in: "72 01 : crc=57 YES\n72 01 4b\n", want: `second line "72 01 4b" has no t=`, wantErr: true},
		{name: "w1 t= not a number", parser: ParserW1Slave, in: "72 01 : crc=57 YES\n72 01 t=xx\n", want: `t="xx" is not integer millidegrees`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewConfig()
			c.Parser = tt.parser
			if tt.scale != 0 {
				c.Scale = tt.scale
			}
			c.Offset = tt.offset
			got, err := parsers[tt.parser]([]byte(tt.in), c)
			switch {
			case tt.wantCRC:
				if !errors.Is(err, errCRC) {
					t.Fatalf("got %s, %v; want the CRC error", got, err)
				}
			case tt.wantErr:
				if err == nil || err.Error() != tt.want {
					t.Fatalf("got %s, %v; want error %s", got, err, tt.want)
				}
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			case string(got) != tt.want:
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{w1Good, w1Bad, w1PowerOn, "48312\n", "1.5", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c := NewConfig()
		for name, p := range parsers {
			got, err := p([]byte(in), c)
			if err == nil && !json.Valid(got) {
				t.Fatalf("%s: payload %q for %q is not JSON", name, got, in)
			}
		}
	})
}
