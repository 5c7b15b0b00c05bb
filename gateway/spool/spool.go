// Package spool is the bounded on-disk FIFO that holds QoS 1 frames while
// the MQTT broker is unreachable, so that a frame acknowledged to its device
// survives a broker outage and a gateway restart.
//
// It is a bbolt database: each Append is one fsynced transaction, and
// records are keyed by a big-endian sequence number so that iteration order
// is arrival order. It knows nothing of MQTT clients or devices.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Policy decides what happens when the spool is full.
type Policy string

const (
	// Reject refuses new records; the device gets a nack and may retry.
	Reject Policy = "reject"
	// DropOldest discards the oldest records to make room, and counts them.
	DropOldest Policy = "drop-oldest"
)

// ErrFull is returned by Append under the Reject policy.
var ErrFull = errors.New("spool full")

// Limits bound the spool; a zero field is unlimited.
type Limits struct {
	MaxRecords int
	MaxBytes   int64
}

// Record is one spooled MQTT publish.
type Record struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Time    time.Time // when the gateway accepted it
}

// Entry is a stored record with its position.
type Entry struct {
	ID uint64
	Record
}

var bucket = []byte("frames")

// Spool is safe for concurrent use.
type Spool struct {
	db     *bolt.DB
	limits Limits
	policy Policy

	mu      sync.Mutex
	count   int
	bytes   int64
	dropped uint64
}

// Open opens (creating if needed) the spool at path.
func Open(path string, limits Limits, policy Policy) (*Spool, error) {
	if policy != Reject && policy != DropOldest {
		return nil, fmt.Errorf("spool policy %q is not %q or %q", policy, Reject, DropOldest)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	s := &Spool{db: db, limits: limits, policy: policy}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(_, v []byte) error {
			s.count++
			s.bytes += int64(len(v))
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read spool %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Spool) Close() error { return s.db.Close() }

// Len returns the number of records held.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Stats reports the records and bytes held and the records dropped so far.
func (s *Spool) Stats() (records int, bytes int64, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.bytes, s.dropped
}

// Append stores records in order in one durable transaction. The result
// has one error per record: nil when stored, ErrFull when the Reject policy
// refused it. Under DropOldest the oldest records make room instead. The
// returned error reports a failure of the store itself, in which case no
// record was stored.
func (s *Spool) Append(records []Record) ([]error, error) {
	results := make([]error, len(records))
	s.mu.Lock()
	defer s.mu.Unlock()
	count, size, dropped := s.count, s.bytes, uint64(0)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for i, r := range records {
			value := encode(r)
			if s.overflows(0, 0, len(value)) {
				// Larger than the whole spool: refused under either policy,
				// and never at the cost of the records already held.
				results[i] = ErrFull
				continue
			}
			if s.overflows(count, size, len(value)) {
				if s.policy == Reject {
					results[i] = ErrFull
					continue
				}
				c := b.Cursor()
				for k, v := c.First(); k != nil && s.overflows(count, size, len(value)); k, v = c.First() {
					size -= int64(len(v))
					count--
					dropped++
					if err := c.Delete(); err != nil {
						return err
					}
				}
			}
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := b.Put(key(id), value); err != nil {
				return err
			}
			count++
			size += int64(len(value))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool append: %w", err)
	}
	s.count, s.bytes = count, size
	s.dropped += dropped
	return results, nil
}

func (s *Spool) overflows(count int, size int64, add int) bool {
	return (s.limits.MaxRecords > 0 && count+1 > s.limits.MaxRecords) ||
		(s.limits.MaxBytes > 0 && size+int64(add) > s.limits.MaxBytes)
}

// Peek returns up to n of the oldest records, oldest first. A record that
// cannot be decoded (a damaged file) is removed and counted in corrupt, so
// that it never blocks the records behind it.
func (s *Spool) Peek(n int) (entries []Entry, corrupt int, err error) {
	var bad []uint64
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil && len(entries) < n; k, v = c.Next() {
			id := binary.BigEndian.Uint64(k)
			r, err := decode(v)
			if err != nil {
				bad = append(bad, id)
				continue
			}
			entries = append(entries, Entry{ID: id, Record: r})
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("spool peek: %w", err)
	}
	if len(bad) > 0 {
		if err := s.Remove(bad); err != nil {
			return nil, 0, err
		}
	}
	return entries, len(bad), nil
}

// Remove deletes the records with the given ids (ids already gone, dropped
// meanwhile by DropOldest, are skipped).
func (s *Spool) Remove(ids []uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	count, size := s.count, s.bytes
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, id := range ids {
			v := b.Get(key(id))
			if v == nil {
				continue
			}
			size -= int64(len(v))
			count--
			if err := b.Delete(key(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool remove: %w", err)
	}
	s.count, s.bytes = count, size
	return nil
}

func key(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}

// Record encoding, version 1:
// 0x01 | flags (bit0 retain) | qos | time (unix ns, 8) | topic len (uvarint) | topic | payload
const formatV1 = 1

func encode(r Record) []byte {
	b := make([]byte, 0, 11+binary.MaxVarintLen64+len(r.Topic)+len(r.Payload))
	var flags byte
	if r.Retain {
		flags |= 1
	}
	b = append(b, formatV1, flags, r.QoS)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(r.Topic)))
	b = append(b, r.Topic...)
	return append(b, r.Payload...)
}

var errCorrupt = errors.New("corrupt spool record")

func decode(v []byte) (Record, error) {
	if len(v) < 11 || v[0] != formatV1 {
		return Record{}, errCorrupt
	}
	r := Record{Retain: v[1]&1 != 0, QoS: v[2], Time: time.Unix(0, int64(binary.BigEndian.Uint64(v[3:11])))}
	n, w := binary.Uvarint(v[11:])
	if w <= 0 || uint64(len(v)-11-w) < n {
		return Record{}, errCorrupt
	}
	start := 11 + w
	r.Topic = string(v[start : start+int(n)])
	r.Payload = append([]byte(nil), v[start+int(n):]...)
	return r, nil
}
