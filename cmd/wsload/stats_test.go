package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		samples       []time.Duration
		p50, p99, max time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", []time.Duration{7}, 7, 7, 7},
		{"two", []time.Duration{2, 1}, 1, 2, 2},
		{"1 to 100", seqDurations(100), 50, 99, 100},
		{"1 to 1000", seqDurations(1000), 500, 990, 1000},
		{"negative is zero", []time.Duration{-5, 3}, 0, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLatencies(10_000)
			for _, d := range tt.samples {
				l.add(d)
			}
			ps, maxD := l.percentiles(0.5, 0.99)
			if ps[0] != tt.p50 || ps[1] != tt.p99 || maxD != tt.max {
				t.Errorf("p50, p99, max = %v, %v, %v; want %v, %v, %v", ps[0], ps[1], maxD, tt.p50, tt.p99, tt.max)
			}
		})
	}
}

// seqDurations is 1..n in shuffled order.
func seqDurations(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[(i*7919)%n] = time.Duration(i + 1) // 7919 is prime: a permutation
	}
	return out
}

func TestLatenciesStayBounded(t *testing.T) {
	t.Parallel()
	l := newLatencies(100)
	for i := range 100_000 {
		l.add(time.Duration(i % 1000))
	}
	l.add(time.Hour)
	if len(l.samples) != 100 || l.n != 100_001 {
		t.Fatalf("kept %d samples of %d, want 100 of 100001", len(l.samples), l.n)
	}
	ps, maxD := l.percentiles(0.5)
	if maxD != time.Hour {
		t.Errorf("max = %v, want 1h (exact beyond the reservoir)", maxD)
	}
	if ps[0] < 200 || ps[0] > 800 { // uniform 0..999: the median of a fair sample is near 500
		t.Errorf("p50 = %v from a uniform reservoir of 0..999", ps[0])
	}
}

func TestLatenciesMerge(t *testing.T) {
	t.Parallel()
	a, b := newLatencies(10), newLatencies(10)
	for i := 1; i <= 5; i++ {
		a.add(time.Duration(i))
		b.add(time.Duration(i + 5))
	}
	all := newLatencies(100)
	all.merge(a)
	all.merge(b)
	ps, maxD := all.percentiles(0.5)
	if ps[0] != 5 || maxD != 10 || all.n != 10 {
		t.Errorf("merged p50 %v max %v n %d, want 5, 10, 10", ps[0], maxD, all.n)
	}
}

func TestSeqTracker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                           string
		arrivals                       []uint64
		sent                           uint64
		distinct, dup, reordered, lost uint64
	}{
		{"in order", []uint64{1, 2, 3}, 3, 3, 0, 0, 0},
		{"nothing", nil, 5, 0, 0, 0, 5},
		{"gap", []uint64{1, 3}, 3, 2, 0, 0, 1},
		{"tail lost", []uint64{1, 2}, 4, 2, 0, 0, 2},
		{"duplicate", []uint64{1, 2, 2, 3}, 3, 3, 1, 0, 0},
		{"late duplicate", []uint64{1, 2, 3, 1}, 3, 3, 1, 0, 0},
		{"swap", []uint64{2, 1, 3}, 3, 3, 0, 1, 0},
		{"reversed", []uint64{3, 2, 1}, 3, 3, 0, 2, 0},
		{"reordered then duplicated", []uint64{2, 1, 1}, 2, 2, 1, 1, 0},
		{"word boundaries", []uint64{63, 64, 65, 127, 128, 129}, 129, 6, 0, 0, 123},
		{"sent ends on a word", seqRange(1, 64), 64, 64, 0, 0, 0},
		{"sent ends before a word", seqRange(1, 63), 63, 63, 0, 0, 0},
		{"sent below what arrived", seqRange(1, 10), 5, 10, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := seqTracker{limit: 1000}
			for _, seq := range tt.arrivals {
				if !s.observe(seq) {
					t.Fatalf("observe(%d) = false", seq)
				}
			}
			if s.distinct != tt.distinct || s.dup != tt.dup || s.reordered != tt.reordered {
				t.Errorf("distinct %d dup %d reordered %d; want %d %d %d", s.distinct, s.dup, s.reordered, tt.distinct, tt.dup, tt.reordered)
			}
			if got := s.lost(tt.sent); got != tt.lost {
				t.Errorf("lost(%d) = %d, want %d", tt.sent, got, tt.lost)
			}
		})
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestSeqTrackerRejectsOutOfRange(t *testing.T) {
	t.Parallel()
	s := seqTracker{limit: 10}
	for _, seq := range []uint64{0, 11, 1 << 40} {
		if s.observe(seq) {
			t.Errorf("observe(%d) = true with limit 10", seq)
		}
	}
	if len(s.seen) > 1 {
		t.Errorf("the bitset grew to %d words for rejected seqs", len(s.seen))
	}
	if got := s.lost(20); got != 10 {
		t.Errorf("lost(20) with limit 10 = %d, want 10", got)
	}
}

func TestSummaryFormat(t *testing.T) {
	t.Parallel()
	s := &summary{}
	s.str("mode", "throughput").int("devices", 10).uint("lost", 0).
		ms("p50_ms", 410*time.Microsecond).ms("p99_ms", 1900*time.Microsecond).ms("max_ms", 0).
		ms("long_ms", 1234567*time.Nanosecond).float("msgs_per_s", 85432.4, 0).float("elapsed_s", 1.1701, 2).
		float("nan", rate(5, 0), 2).float("neg", -0.0001, 2)
	want := "mode=throughput devices=10 lost=0 p50_ms=0.41 p99_ms=1.9 max_ms=0 long_ms=1.235 msgs_per_s=85432 elapsed_s=1.17 nan=0 neg=0"
	if got := s.String(); got != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
	if strings.Count(s.String(), "\n") != 0 {
		t.Error("the summary spans lines")
	}
}
