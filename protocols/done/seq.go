package done

// windowSize is how far behind the highest seq a repeated seq is still
// recognised. Older ones count as new: a device only sends one again after a
// nack (or a lost ack), and publishing a duplicate is at-least-once delivery,
// while acking a pub that was never published would lose it.
const windowSize = 1024

// seqWindow remembers which of the last windowSize seqs were accepted.
// Bit i of bits marks seq high-i. A nil window has seen nothing.
type seqWindow struct {
	started bool
	high    uint64
	bits    [windowSize / 64]uint64
}

func (w *seqWindow) seen(seq uint64) bool {
	if w == nil || !w.started || seq > w.high {
		return false
	}
	age := w.high - seq
	if age >= windowSize {
		return false
	}
	return w.bits[age/64]&(1<<(age%64)) != 0
}

func (w *seqWindow) add(seq uint64) {
	if !w.started {
		w.started, w.high = true, seq
		w.bits[0] = 1
		return
	}
	if seq > w.high {
		w.shift(seq - w.high)
		w.high = seq
	}
	age := w.high - seq
	if age < windowSize {
		w.bits[age/64] |= 1 << (age % 64)
	}
}

func (w *seqWindow) remove(seq uint64) {
	if w == nil || !w.started || seq > w.high {
		return
	}
	if age := w.high - seq; age < windowSize {
		w.bits[age/64] &^= 1 << (age % 64)
	}
}

// shift ages every mark by n.
func (w *seqWindow) shift(n uint64) {
	if n >= windowSize {
		w.bits = [windowSize / 64]uint64{}
		return
	}
	words, bitsN := int(n/64), uint(n%64)
	for i := len(w.bits) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.bits[j] << bitsN
			if bitsN > 0 && j-1 >= 0 {
				v |= w.bits[j-1] >> (64 - bitsN)
			}
		}
		w.bits[i] = v
	}
}
