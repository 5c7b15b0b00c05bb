package main

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxSamples bounds the latency samples kept: up to it the percentiles are
// exact, beyond it they come from a uniform reservoir of that many samples
// (the maximum stays exact).
const maxSamples = 1 << 20

// latencies collects durations and reports percentiles. Not safe for
// concurrent use.
type latencies struct {
	samples []time.Duration
	limit   int
	n       uint64 // durations observed
	max     time.Duration
	rng     *rand.Rand
}

func newLatencies(limit int) *latencies {
	return &latencies{limit: limit, rng: rand.New(rand.NewPCG(1, 2))}
}

func (l *latencies) add(d time.Duration) {
	if d < 0 {
		d = 0 // a clock step; the send time came from this machine's clock
	}
	l.n++
	l.max = max(l.max, d)
	if len(l.samples) < l.limit {
		l.samples = append(l.samples, d)
		return
	}
	// Reservoir sampling (algorithm R): every duration ends up kept with the
	// same probability limit/n.
	if k := l.rng.Uint64N(l.n); k < uint64(l.limit) {
		l.samples[k] = d
	}
}

// merge adds o's samples (all of them, beyond the limit) and count to l:
// the percentiles of several recorders together.
func (l *latencies) merge(o *latencies) {
	l.samples = append(l.samples, o.samples...)
	l.n += o.n
	l.max = max(l.max, o.max)
}

// percentiles returns the nearest-rank percentiles p (0 < p <= 1) and the
// maximum; zeros without samples.
func (l *latencies) percentiles(ps ...float64) (out []time.Duration, maxD time.Duration) {
	out = make([]time.Duration, len(ps))
	if len(l.samples) == 0 {
		return out, 0
	}
	sorted := slices.Clone(l.samples)
	slices.Sort(sorted)
	for i, p := range ps {
		rank := int(math.Ceil(p * float64(len(sorted))))
		out[i] = sorted[min(max(rank, 1), len(sorted))-1]
	}
	return out, l.max
}

// seqTracker follows the seqs of one device as they arrive: distinct ones,
// duplicates, and those that came after a higher seq (reordered). Seqs run
// from 1 to limit; the bitset grows with the highest seq seen, so memory is
// bounded by limit/8 bytes. Not safe for concurrent use.
type seqTracker struct {
	seen      []uint64
	limit     uint64
	highest   uint64
	distinct  uint64
	dup       uint64
	reordered uint64
}

// observe records one arrival; false when seq is outside 1..limit.
func (s *seqTracker) observe(seq uint64) bool {
	if seq == 0 || seq > s.limit {
		return false
	}
	word, bit := seq/64, uint64(1)<<(seq%64)
	if word >= uint64(len(s.seen)) {
		s.seen = append(s.seen, make([]uint64, int(word)+1-len(s.seen))...)
	}
	switch {
	case s.seen[word]&bit != 0:
		s.dup++
		return true
	case seq < s.highest:
		s.reordered++
	default:
		s.highest = seq
	}
	s.seen[word] |= bit
	s.distinct++
	return true
}

// lost is how many of seqs 1..sent never arrived.
func (s *seqTracker) lost(sent uint64) uint64 {
	sent = min(sent, s.limit)
	var got uint64
	for w, word := range s.seen {
		lo := uint64(w) * 64
		if lo > sent {
			break
		}
		if lo+63 > sent {
			word &= (uint64(1) << (sent - lo + 1)) - 1 // bits lo..sent
		}
		got += uint64(bits.OnesCount64(word))
	}
	return sent - got
}

// summary is the one result line: key=value pairs in the order added.
type summary struct {
	fields []string
}

func (s *summary) str(key, v string) *summary {
	s.fields = append(s.fields, key+"="+v)
	return s
}

func (s *summary) int(key string, v int64) *summary { return s.str(key, strconv.FormatInt(v, 10)) }

func (s *summary) uint(key string, v uint64) *summary { return s.str(key, strconv.FormatUint(v, 10)) }

// ms adds a duration in milliseconds with up to three decimals.
func (s *summary) ms(key string, d time.Duration) *summary {
	return s.float(key, float64(d)/float64(time.Millisecond), 3)
}

// float adds v rounded to prec decimals, without trailing zeros.
func (s *summary) float(key string, v float64, prec int) *summary {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return s.str(key, formatFloat(v, prec))
}

func formatFloat(v float64, prec int) string {
	out := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(out, ".") {
		out = strings.TrimRight(strings.TrimRight(out, "0"), ".")
	}
	if out == "-0" {
		out = "0"
	}
	return out
}

func (s *summary) String() string { return strings.Join(s.fields, " ") }

// rate is n per second over d; 0 for an empty interval.
func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
