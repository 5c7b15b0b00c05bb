package done

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSeqWindowEmpty(t *testing.T) {
	t.Parallel()
	var w seqWindow
	for _, seq := range []uint64{0, 1, 1023, 1024, math.MaxUint64} {
		if w.seen(seq) {
			t.Errorf("empty window has seen %d", seq)
		}
	}
	w.remove(0) // harmless on an empty window
	w.remove(math.MaxUint64)
	if w.seen(0) {
		t.Error("remove marked seq 0")
	}
}

func TestSeqWindowAddSeenRemove(t *testing.T) {
	t.Parallel()
	for _, first := range []uint64{0, 1, 1000, math.MaxUint64 - 2000} {
		var w seqWindow
		w.add(first)
		if !w.seen(first) {
			t.Fatalf("first %d not seen", first)
		}
		if w.seen(first+1) || (first > 0 && w.seen(first-1)) {
			t.Errorf("first %d: neighbours seen", first)
		}
		w.add(first + 2)
		w.add(first + 1)
		for i := range uint64(3) {
			if !w.seen(first + i) {
				t.Errorf("first %d: %d not seen", first, first+i)
			}
		}
		w.remove(first + 1)
		if w.seen(first+1) || !w.seen(first) || !w.seen(first+2) {
			t.Errorf("first %d: remove(%d) touched the wrong seqs", first, first+1)
		}
		w.remove(first + 2) // the highest: it stays the high mark but is not seen
		if w.seen(first + 2) {
			t.Errorf("first %d: removed high still seen", first)
		}
		w.add(first + 2)
		if !w.seen(first + 2) {
			t.Errorf("first %d: re-added high not seen", first)
		}
		w.remove(first + 100) // above the high mark: nothing
		if w.seen(first + 100) {
			t.Errorf("first %d: %d seen", first, first+100)
		}
		w.add(first) // twice is harmless
		if !w.seen(first) {
			t.Errorf("first %d: re-add lost it", first)
		}
	}
}

func TestSeqWindowShift(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{1, 2, 63, 64, 65, 127, 128, 129, 1000, 1023, 1024, 1025, 5000, 1 << 40} {
		var w seqWindow
		const base = 10
		// Mark base and the seqs just around the word boundaries below it.
		w.add(base)
		w.add(base + n)
		for _, seq := range []uint64{base, base + n} {
			age := base + n - seq
			if got, want := w.seen(seq), age < windowSize; got != want {
				t.Errorf("shift %d: seen(%d) = %v, want %v", n, seq, got, want)
			}
		}
		// Nothing in between was marked.
		for _, seq := range []uint64{base + 1, base + n/2, base + n - 1} {
			if seq != base && seq != base+n && w.seen(seq) {
				t.Errorf("shift %d: seen(%d) but it was never added", n, seq)
			}
		}
		if w.seen(base - 1) {
			t.Errorf("shift %d: seen(%d) but it was never added", n, base-1)
		}
	}
}

// TestSeqWindowEveryBit marks a full window, then shifts it by each amount
// and checks every bit against what must have survived.
func TestSeqWindowEveryBit(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{1, 31, 63, 64, 65, 100, 511, 1023, 1024, 1025, 5000} {
		var w seqWindow
		const base = 100000
		for seq := uint64(base - windowSize + 1); seq <= base; seq++ {
			if seq%3 != 0 { // a pattern that crosses every word boundary
				w.add(seq)
			}
		}
		w.add(base + n)
		for seq := uint64(base - 2*windowSize); seq <= base+n+10; seq++ {
			want := false
			switch {
			case seq > base+n:
			case base+n-seq >= windowSize:
				// outside the window: no longer recognised
			case seq == base+n:
				want = true
			case seq <= base && seq > base-windowSize:
				want = seq%3 != 0
			}
			if got := w.seen(seq); got != want {
				t.Fatalf("shift %d: seen(%d) = %v, want %v", n, seq, got, want)
			}
		}
	}
}

func TestSeqWindowOutside(t *testing.T) {
	t.Parallel()
	var w seqWindow
	w.add(5)
	w.add(5 + windowSize - 1)
	if !w.seen(5) {
		t.Error("seq at the window's last position not seen")
	}
	w.add(5 + windowSize)
	if w.seen(5) {
		t.Error("seq one past the window still seen")
	}
	// Outside the window, add and remove do nothing (and do not panic).
	w.add(0)
	w.remove(0)
	w.remove(4)
	if w.seen(0) || w.seen(4) {
		t.Error("a seq outside the window is seen")
	}
	if !w.seen(5 + windowSize) {
		t.Error("the high mark was lost")
	}
}

func TestSeqWindowHugeJumps(t *testing.T) {
	t.Parallel()
	var w seqWindow
	w.add(0)
	w.add(1 << 63)
	if w.seen(0) || !w.seen(1<<63) {
		t.Errorf("after a jump to 2^63: seen(0)=%v seen(2^63)=%v", w.seen(0), w.seen(1<<63))
	}
	w.add(math.MaxUint64)
	if !w.seen(math.MaxUint64) || w.seen(1<<63) || w.seen(math.MaxUint64-1) {
		t.Error("after a jump to max uint64: wrong marks")
	}
	w.add(math.MaxUint64 - 1)
	w.add(math.MaxUint64 - windowSize + 1)
	for _, seq := range []uint64{math.MaxUint64, math.MaxUint64 - 1, math.MaxUint64 - windowSize + 1} {
		if !w.seen(seq) {
			t.Errorf("seen(%d) = false", seq)
		}
	}
	if w.seen(math.MaxUint64 - windowSize) {
		t.Error("a seq outside the window below max uint64 is seen")
	}
	w.remove(math.MaxUint64)
	if w.seen(math.MaxUint64) || !w.seen(math.MaxUint64-1) {
		t.Error("remove(max uint64)")
	}
}

func TestSeqWindowMaxFirst(t *testing.T) {
	t.Parallel()
	var w seqWindow
	w.add(math.MaxUint64)
	if !w.seen(math.MaxUint64) || w.seen(0) || w.seen(math.MaxUint64-1) {
		t.Error("window starting at max uint64")
	}
	w.add(0) // far below: outside the window, ignored
	if w.seen(0) || !w.seen(math.MaxUint64) {
		t.Error("adding 0 below max uint64")
	}
}

// TestSeqWindowModel compares the window with a plain set restricted to the
// last windowSize seqs, over random operations near the high mark.
func TestSeqWindowModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	gaps := []uint64{0, 1, 1, 1, 2, 63, 64, 65, 1023, 1024, 1025, 5000}
	for round := range 20 {
		var w seqWindow
		set := map[uint64]bool{}
		var high uint64
		started := false
		inWindow := func(seq uint64) bool { return started && seq <= high && high-seq < windowSize }
		for range 3000 {
			var seq uint64
			switch r := rng.IntN(10); {
			case r < 4 || !started:
				seq = high + gaps[rng.IntN(len(gaps))]
			case r < 9:
				seq = high - min(high, rng.Uint64N(windowSize+50))
			default:
				seq = rng.Uint64N(high + 1)
			}
			switch rng.IntN(3) {
			case 0, 1:
				w.add(seq)
				if !started || seq > high {
					high, started = seq, true
				}
				if inWindow(seq) {
					set[seq] = true
				}
			case 2:
				w.remove(seq)
				delete(set, seq)
			}
			for _, probe := range []uint64{seq, high, high - min(high, 1), high - min(high, 64), high - min(high, windowSize-1), high - min(high, windowSize), high + 1} {
				want := set[probe] && inWindow(probe)
				if got := w.seen(probe); got != want {
					t.Fatalf("round %d: seen(%d) = %v, want %v (high %d)", round, probe, got, want, high)
				}
			}
		}
	}
}
