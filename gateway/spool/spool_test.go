package spool

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, path string, limits Limits, policy Policy) *Spool {
	t.Helper()
	s, err := Open(path, limits, policy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func tempSpool(t *testing.T, limits Limits, policy Policy) *Spool {
	t.Helper()
	return open(t, filepath.Join(t.TempDir(), "spool.db"), limits, policy)
}

func record(i int) Record {
	return Record{
		Topic:   fmt.Sprintf("wsgate/dev/t%d", i),
		Payload: fmt.Appendf(nil, `{"i":%d}`, i),
		QoS:     1,
		Retain:  i%2 == 0,
		Time:    time.Unix(1700000000, int64(i)),
	}
}

func records(from, to int) []Record {
	var rs []Record
	for i := from; i < to; i++ {
		rs = append(rs, record(i))
	}
	return rs
}

// appendAll appends rs and fails unless every record was stored.
func appendAll(t *testing.T, s *Spool, rs []Record) {
	t.Helper()
	results, err := s.Append(rs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r != nil {
			t.Fatalf("record %d: %v", i, r)
		}
	}
}

func peekAll(t *testing.T, s *Spool) []Entry {
	t.Helper()
	entries, _, err := s.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func sameRecord(a, b Record) bool {
	return a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload) && a.QoS == b.QoS &&
		a.Retain == b.Retain && a.Time.Equal(b.Time)
}

// wantRecords checks that the spool holds exactly want, oldest first.
func wantRecords(t *testing.T, s *Spool, want []Record) {
	t.Helper()
	entries := peekAll(t, s)
	if len(entries) != len(want) {
		t.Fatalf("spool holds %d records, want %d", len(entries), len(want))
	}
	var last uint64
	for i, e := range entries {
		if !sameRecord(e.Record, want[i]) {
			t.Fatalf("record %d = %+v, want %+v", i, e.Record, want[i])
		}
		if i > 0 && e.ID <= last {
			t.Fatalf("record %d has id %d after %d: ids must increase", i, e.ID, last)
		}
		last = e.ID
	}
	if n := s.Len(); n != len(want) {
		t.Fatalf("Len = %d, want %d", n, len(want))
	}
}

func ids(entries []Entry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}

func TestAppendPeekRemoveKeepsOrder(t *testing.T) {
	t.Parallel()
	s := tempSpool(t, Limits{}, Reject)
	all := records(0, 10)
	appendAll(t, s, all[:4])
	appendAll(t, s, all[4:])
	wantRecords(t, s, all)

	first, _, err := s.Peek(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 3 || !sameRecord(first[2].Record, all[2]) {
		t.Fatalf("Peek(3) = %d records ending %+v", len(first), first[len(first)-1])
	}
	if err := s.Remove(ids(first)); err != nil {
		t.Fatal(err)
	}
	wantRecords(t, s, all[3:])

	// Removing out of order, and ids already gone, is fine.
	rest := peekAll(t, s)
	if err := s.Remove([]uint64{rest[2].ID, rest[0].ID, first[0].ID, 1 << 40}); err != nil {
		t.Fatal(err)
	}
	want := append([]Record{all[4]}, all[6:]...)
	wantRecords(t, s, want)

	if err := s.Remove(ids(peekAll(t, s))); err != nil {
		t.Fatal(err)
	}
	wantRecords(t, s, nil)
	if records, bytes, dropped := s.Stats(); records != 0 || bytes != 0 || dropped != 0 {
		t.Fatalf("Stats of an empty spool = %d records, %d bytes, %d dropped", records, bytes, dropped)
	}
}

func TestEmptyRecordFields(t *testing.T) {
	t.Parallel()
	s := tempSpool(t, Limits{}, Reject)
	r := Record{Topic: "a", Time: time.Unix(0, 1)} // empty payload, QoS 0
	appendAll(t, s, []Record{r})
	got := peekAll(t, s)
	if len(got) != 1 || !sameRecord(got[0].Record, r) {
		t.Fatalf("got %+v, want %+v", got, r)
	}
	if len(got[0].Payload) != 0 {
		t.Fatalf("payload = %q, want empty", got[0].Payload)
	}
}

func TestReopenKeepsRecordsAndCounts(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", "spool.db") // the directory is created
	s, err := Open(path, Limits{}, Reject)
	if err != nil {
		t.Fatal(err)
	}
	all := records(0, 20)
	appendAll(t, s, all)
	entries := peekAll(t, s)
	if err := s.Remove(ids(entries[:5])); err != nil {
		t.Fatal(err)
	}
	_, bytesBefore, _ := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path, Limits{}, Reject)
	wantRecords(t, s, all[5:])
	if n, b, _ := s.Stats(); n != 15 || b != bytesBefore {
		t.Fatalf("after reopen Stats = %d records, %d bytes; want 15, %d", n, b, bytesBefore)
	}
	// New records go after the old ones, with larger ids.
	lastOld := peekAll(t, s)[14].ID
	appendAll(t, s, records(20, 22))
	if got := peekAll(t, s); got[15].ID <= lastOld {
		t.Fatalf("id after reopen %d is not after %d", got[15].ID, lastOld)
	}
	wantRecords(t, s, append(all[5:], records(20, 22)...))
}

func TestOpenRejectsUnknownPolicy(t *testing.T) {
	t.Parallel()
	if _, err := Open(filepath.Join(t.TempDir(), "s.db"), Limits{}, "drop-newest"); err == nil {
		t.Fatal("Open accepted an unknown policy")
	}
}

func TestOpenLockedSpoolFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s.db")
	open(t, path, Limits{}, Reject)
	if _, err := Open(path, Limits{}, Reject); err == nil {
		t.Fatal("a second Open of a spool in use succeeded")
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	size := int64(len(encode(record(0)))) // records 0-9 all encode to this size
	for _, tc := range []struct {
		name        string
		limits      Limits
		policy      Policy
		stored      []int // indexes of the 10 records that end up in the spool
		refused     int   // ErrFull results
		dropped     uint64
		wantRecords int
	}{
		{name: "count reject", limits: Limits{MaxRecords: 4}, policy: Reject, stored: []int{0, 1, 2, 3}, refused: 6},
		{name: "count drop-oldest", limits: Limits{MaxRecords: 4}, policy: DropOldest, stored: []int{6, 7, 8, 9}, dropped: 6},
		{name: "bytes reject", limits: Limits{MaxBytes: 3*size + size/2}, policy: Reject, stored: []int{0, 1, 2}, refused: 7},
		{name: "bytes drop-oldest", limits: Limits{MaxBytes: 3*size + size/2}, policy: DropOldest, stored: []int{7, 8, 9}, dropped: 7},
		{name: "bytes exact fit", limits: Limits{MaxBytes: 5 * size}, policy: Reject, stored: []int{0, 1, 2, 3, 4}, refused: 5},
		{name: "both, count binds", limits: Limits{MaxRecords: 2, MaxBytes: 100 * size}, policy: DropOldest, stored: []int{8, 9}, dropped: 8},
		{name: "unlimited", policy: Reject, stored: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tempSpool(t, tc.limits, tc.policy)
			all := records(0, 10)
			// One at a time, then again as one batch in a fresh spool: a
			// batch must behave like its records appended in order.
			for _, batched := range []bool{false, true} {
				if batched {
					s = tempSpool(t, tc.limits, tc.policy)
				}
				var results []error
				if batched {
					var err error
					if results, err = s.Append(all); err != nil {
						t.Fatal(err)
					}
				} else {
					for _, r := range all {
						res, err := s.Append([]Record{r})
						if err != nil {
							t.Fatal(err)
						}
						results = append(results, res...)
					}
				}
				refused := 0
				for _, err := range results {
					if err != nil {
						if !errors.Is(err, ErrFull) {
							t.Fatalf("result %v, want ErrFull", err)
						}
						refused++
					}
				}
				if refused != tc.refused {
					t.Errorf("batched=%v: %d refused, want %d", batched, refused, tc.refused)
				}
				var want []Record
				for _, i := range tc.stored {
					want = append(want, all[i])
				}
				wantRecords(t, s, want)
				n, b, dropped := s.Stats()
				if n != len(want) || b != int64(len(want))*size || dropped != tc.dropped {
					t.Errorf("batched=%v: Stats = %d records, %d bytes, %d dropped; want %d, %d, %d",
						batched, n, b, dropped, len(want), int64(len(want))*size, tc.dropped)
				}
				if tc.limits.MaxRecords > 0 && n > tc.limits.MaxRecords || tc.limits.MaxBytes > 0 && b > tc.limits.MaxBytes {
					t.Errorf("spool over its limits: %d records, %d bytes", n, b)
				}
			}
		})
	}
}

func TestRemovingMakesRoomAgain(t *testing.T) {
	t.Parallel()
	s := tempSpool(t, Limits{MaxRecords: 3}, Reject)
	appendAll(t, s, records(0, 3))
	if res, _ := s.Append(records(3, 4)); !errors.Is(res[0], ErrFull) {
		t.Fatalf("a 4th record in a spool of 3: %v, want ErrFull", res[0])
	}
	entries := peekAll(t, s)
	if err := s.Remove(ids(entries[:2])); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, records(3, 5))
	wantRecords(t, s, []Record{record(2), record(3), record(4)})
}

// A record that cannot fit even in the empty spool is refused under both
// policies, and drop-oldest must not throw away what it holds trying.
func TestRecordLargerThanTheWholeSpool(t *testing.T) {
	t.Parallel()
	size := int64(len(encode(record(0))))
	for _, policy := range []Policy{Reject, DropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			s := tempSpool(t, Limits{MaxBytes: 4 * size}, policy)
			appendAll(t, s, records(0, 3))
			huge := record(99)
			huge.Payload = bytes.Repeat([]byte("x"), int(5*size))
			results, err := s.Append([]Record{huge, record(3)})
			if err != nil {
				t.Fatal(err)
			}
			if !errors.Is(results[0], ErrFull) {
				t.Fatalf("huge record: %v, want ErrFull", results[0])
			}
			if results[1] != nil {
				t.Fatalf("the record after it: %v, want stored", results[1])
			}
			wantRecords(t, s, records(0, 4))
			if _, _, dropped := s.Stats(); dropped != 0 {
				t.Fatalf("%d records dropped for a record that was refused anyway", dropped)
			}
		})
	}
}

// TestCorruptRecordIsDiscarded: a damaged record is removed and counted,
// and the records around it are still read, in order.
func TestCorruptRecordIsDiscarded(t *testing.T) {
	t.Parallel()
	for _, bad := range [][]byte{
		nil,
		{formatV1},
		{2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a'},                                                            // unknown format version
		{formatV1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 'a'},                                                     // topic longer than the record
		{formatV1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x80},                                                       // truncated uvarint
		{formatV1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // topic length 2^64-1
	} {
		s := tempSpool(t, Limits{}, Reject)
		appendAll(t, s, records(0, 2))
		// The damaged record sits between the two good ones and the next.
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			return b.Put(key(id), bad)
		})
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, s, records(2, 3))
		entries, corrupt, err := s.Peek(10)
		if err != nil || corrupt != 1 || len(entries) != 3 {
			t.Fatalf("Peek over %x: %d entries, %d corrupt, %v; want 3 entries, 1 corrupt", bad, len(entries), corrupt, err)
		}
		if entries, corrupt, err := s.Peek(10); err != nil || corrupt != 0 || len(entries) != 3 {
			t.Errorf("second Peek: %d entries, %d corrupt, %v: the damaged record was not removed", len(entries), corrupt, err)
		}
	}
}

// Appends, peeks and removes from several goroutines keep the counts right
// (run with -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := tempSpool(t, Limits{MaxRecords: 50}, DropOldest)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				if _, err := s.Append(records(w*100+i, w*100+i+3)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 30 {
			entries, _, err := s.Peek(7)
			if err != nil {
				t.Error(err)
				return
			}
			if err := s.Remove(ids(entries)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	entries := peekAll(t, s)
	n, b, _ := s.Stats()
	var size int64
	for _, e := range entries {
		size += int64(len(encode(e.Record)))
	}
	if n != len(entries) || b != size || n > 50 {
		t.Fatalf("Stats say %d records, %d bytes; the spool holds %d records, %d bytes", n, b, len(entries), size)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range []Record{
		record(1),
		record(2),
		{Topic: "", Payload: nil, Time: time.Unix(0, 0)},
		{Topic: "a/b/c", Payload: []byte{0, 1, 2, 255}, QoS: 2, Retain: true, Time: time.Unix(-5, 3)},
		{Topic: string(bytes.Repeat([]byte("t"), 300)), Payload: []byte("{}"), QoS: 1, Time: time.Now()},
	} {
		got, err := decode(encode(r))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if !sameRecord(got, r) {
			t.Fatalf("round trip of %+v gave %+v", r, got)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the record decoder: it must never
// panic nor fail with anything but errCorrupt; what it accepts must survive
// an encode/decode round trip and must not alias the input (bbolt values
// are only valid inside their transaction).
func FuzzDecode(f *testing.F) {
	f.Add(encode(record(1)))
	f.Add(encode(Record{Topic: "wsgate/d/x", Payload: []byte(`{"t":21.5}`), QoS: 1, Retain: true, Time: time.Unix(1700000000, 0)}))
	f.Add([]byte{formatV1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{formatV1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decode(v)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decode error %v is not errCorrupt", err)
			}
			return
		}
		again, err := decode(encode(r))
		if err != nil || !sameRecord(again, r) {
			t.Fatalf("decode(%x) = %+v; its encoding decodes to %+v, %v", v, r, again, err)
		}
		payload := bytes.Clone(r.Payload)
		for i := range v {
			v[i] ^= 0xff
		}
		if !bytes.Equal(r.Payload, payload) {
			t.Fatalf("the decoded payload aliases the record bytes")
		}
	})
}
