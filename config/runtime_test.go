package config

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "4096", want: 4096},
		{in: "512B", want: 512},
		{in: "64KiB", want: 64 << 10},
		{in: "256MiB", want: 256 << 20},
		{in: "2GiB", want: 2 << 30},
		{in: "1TiB", want: 1 << 40},
		{in: "", bad: true},
		{in: "MiB", bad: true},
		{in: "256MB", bad: true},
		{in: "1.5GiB", bad: true},
		{in: "-1MiB", bad: true},
		{in: " 256MiB", bad: true},
		{in: "9999999TiB", bad: true},
	} {
		got, err := ParseSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestRuntimeProcs(t *testing.T) {
	for _, tc := range []struct {
		setting, goProcs, want int
	}{
		{setting: 0, goProcs: 1, want: 1},
		{setting: 0, goProcs: 2, want: 1},
		{setting: 0, goProcs: 4, want: 2},
		{setting: 0, goProcs: 7, want: 3},
		{setting: 3, goProcs: 8, want: 3},
		{setting: 4, goProcs: 2, want: 4},
	} {
		if got := (Runtime{MaxProcs: tc.setting}).Procs(tc.goProcs); got != tc.want {
			t.Errorf("max_procs %d with %d cores: %d, want %d", tc.setting, tc.goProcs, got, tc.want)
		}
	}
}
