package trust

import (
	"math/big"
	"strings"
	"testing"
)

func TestKeepNewer(t *testing.T) {
	t.Parallel()
	const (
		low  = "0fffffffffffffffffffffffffffffffffffffff"
		high = "f000000000000000000000000000000000000000"
		mid  = "a000000000000000000000000000000000000001"
	)
	tests := []struct {
		local, peer string
		want        bool
	}{
		{high, low, true},
		{low, high, false},
		{mid, low, true},
		{mid, high, false},
		{high, high, false},                              // a node connected to itself: no decider
		{strings.ToUpper(high), low, true},               // case does not matter
		{"F0 00" + high[4:], strings.ToUpper(mid), true}, // grouped forms
		{"0a00000000000000000000000000000000000000", "09ffffffffffffffffffffffffffffffffffffff", true},
	}
	for _, tt := range tests {
		if got := KeepNewer(tt.local, tt.peer); got != tt.want {
			t.Errorf("KeepNewer(%s, %s) = %v, want %v", tt.local, tt.peer, got, tt.want)
		}
		if got := KeepOutgoing(tt.local, tt.peer); got != tt.want {
			t.Errorf("KeepOutgoing(%s, %s) = %v, want %v", tt.local, tt.peer, got, tt.want)
		}
	}
}

// Exactly one of two distinct nodes decides, and it is the one whose SKI is
// the larger number.
func TestKeepNewerOneDecider(t *testing.T) {
	t.Parallel()
	for i := range 200 {
		a, b := ski(i*7919), ski(i*104729+3)
		if a == b {
			continue
		}
		if KeepNewer(a, b) == KeepNewer(b, a) {
			t.Errorf("%s, %s: both or neither decide", a, b)
		}
		x, _ := new(big.Int).SetString(a, 16)
		y, _ := new(big.Int).SetString(b, 16)
		if KeepNewer(a, b) != (x.Cmp(y) > 0) {
			t.Errorf("%s, %s: not numeric order", a, b)
		}
	}
}
