package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args             []string
		config, admin    string
		positional       []string
		wantErr, wantHlp bool
	}{
		{args: []string{"approve", "ab12", "-admin", "127.0.0.1:9", "-config", "x.toml"},
			config: "x.toml", admin: "127.0.0.1:9", positional: []string{"approve", "ab12"}},
		{args: []string{"-config", "x.toml", "approve", "-admin=a:1", "ab12"},
			config: "x.toml", admin: "a:1", positional: []string{"approve", "ab12"}},
		{args: []string{"peers"}, positional: []string{"peers"}},
		{args: []string{"approve", "--", "-not-a-flag"}, positional: []string{"approve", "-not-a-flag"}},
		{args: []string{"approve", "-adminn", "x"}, wantErr: true},
		{args: []string{"approve", "-h"}, wantErr: true, wantHlp: true},
	}
	for _, tt := range tests {
		flags := flag.NewFlagSet("test", flag.ContinueOnError)
		flags.SetOutput(io.Discard)
		config := flags.String("config", "", "")
		admin := flags.String("admin", "", "")
		positional, err := parseInterspersed(flags, tt.args)
		if tt.wantErr {
			if err == nil || errors.Is(err, flag.ErrHelp) != tt.wantHlp {
				t.Errorf("%q: err %v", tt.args, err)
			}
			continue
		}
		if err != nil || *config != tt.config || *admin != tt.admin || !slices.Equal(positional, tt.positional) {
			t.Errorf("%q: config %q admin %q positional %q err %v", tt.args, *config, *admin, positional, err)
		}
	}
}
