package mdns

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTXTMap(t *testing.T) {
	t.Parallel()
	got := TXTMap([]string{"txtvers=1", "Path=/ws/", "PATH=/other/", "flag", "=junk", "", "empty=", "v=a=b"})
	want := map[string]string{"txtvers": "1", "path": "/ws/", "flag": "", "empty": "", "v": "a=b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TXTMap = %q, want %q", got, want)
	}
}

func TestInstanceName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ base, suffix, want string }{
		{"hub", "", "hub"},
		{"hub", " (ws://:8080/)", "hub (ws://:8080/)"},
		{strings.Repeat("a", 64), "", strings.Repeat("a", 63)},
		{strings.Repeat("a", 62) + "ü", "", strings.Repeat("a", 62)},
		{strings.Repeat("a", 60), " (x)", strings.Repeat("a", 59) + " (x)"},
		{"hub", strings.Repeat("s", 70), strings.Repeat("s", 63)},
	} {
		got := InstanceName(tt.base, tt.suffix)
		if got != tt.want || !utf8.ValidString(got) || len(got) > MaxInstanceLen {
			t.Errorf("InstanceName(%q, %q) = %q, want %q", tt.base, tt.suffix, got, tt.want)
		}
	}
}
