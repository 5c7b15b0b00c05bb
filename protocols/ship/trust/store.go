package trust

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/internal/atomicfile"
)

// State is the trust state of a peer.
type State string

// The states. Check returns one of them as its Decision.
const (
	Trusted  State = "trusted"
	Pending  State = "pending"
	Rejected State = "rejected"
)

// Decision is what Check decides for a connecting peer: its entry's state.
type Decision = State

// Bounds of the store.
const (
	// MaxPending is the most pending entries kept; adding one more drops the
	// least recently seen.
	MaxPending = 100
	// MaxAutoAccepted is the most auto-accepted entries kept, dropped the
	// same way. Entries the user approved or rejected are never dropped.
	MaxAutoAccepted = 1000
	// lastSeenResolution: a Check that changes nothing but LastSeen, less
	// than this after the previous one, is not written to disk.
	lastSeenResolution = time.Minute
	fileVersion        = 1
)

// Errors callers may need to tell apart.
var (
	// ErrNotFound: the SKI has no entry (never seen, removed or dropped).
	ErrNotFound = errors.New("trust: unknown SKI")
	// ErrSHIPIDMismatch: the peer presents a SHIP ID other than the one
	// stored for its SKI (ship-go closes with 4450 "SHIP id mismatch").
	ErrSHIPIDMismatch = errors.New("trust: SHIP ID mismatch")
)

// Entry is one peer.
type Entry struct {
	SKI    string `json:"ski"`
	SHIPID string `json:"shipId,omitempty"`
	State  State  `json:"state"`
	// AutoAccepted is true for an entry trusted by auto-accept rather than
	// by the user.
	AutoAccepted bool `json:"autoAccepted,omitempty"`
	// FirstSeen and LastSeen are the first and latest Check; zero for an
	// entry the user added before the peer ever connected.
	FirstSeen time.Time `json:"firstSeen,omitzero"`
	LastSeen  time.Time `json:"lastSeen,omitzero"`
}

// Event reports a change of one entry: its new value, or Removed with its
// last value.
type Event struct {
	Entry   Entry
	Removed bool
}

type file struct {
	Version int     `json:"version"`
	Peers   []Entry `json:"peers"`
}

// Store is the persistent trust store. It is safe for concurrent use.
type Store struct {
	path string

	mu      sync.Mutex
	entries map[string]Entry
	waiters map[string]chan struct{} // closed when the entry changes
	subs    map[chan Event]struct{}

	// Replaced by tests.
	maxPending, maxAuto int
	now                 func() time.Time
	writeFile           func(path string, data []byte) error
}

// Open loads the store kept at path, or starts an empty one if the file does
// not exist; the directory is created (0700) if needed. A file that cannot
// be parsed is an error, not an empty store: pairings are not dropped
// silently.
func Open(path string) (*Store, error) {
	s := &Store{
		path:       path,
		entries:    make(map[string]Entry),
		waiters:    make(map[string]chan struct{}),
		subs:       make(map[chan Event]struct{}),
		maxPending: MaxPending,
		maxAuto:    MaxAutoAccepted,
		now:        time.Now,
		writeFile:  writeFile,
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	// Temporary files of writes cut short by a crash.
	if stale, err := filepath.Glob(tempPattern(path)); err == nil {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("trust: %s: %w", path, err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("trust: %s: version %d, want %d", path, f.Version, fileVersion)
	}
	for _, e := range f.Peers {
		ski, err := identity.NormalizeSKI(e.SKI)
		if err != nil {
			return nil, fmt.Errorf("trust: %s: %w", path, err)
		}
		switch e.State {
		case Trusted, Pending, Rejected:
		default:
			return nil, fmt.Errorf("trust: %s: %s: unknown state %q", path, ski, e.State)
		}
		if _, dup := s.entries[ski]; dup {
			return nil, fmt.Errorf("trust: %s: %s listed twice", path, ski)
		}
		e.SKI = ski
		s.entries[ski] = e
	}
	return s, nil
}

// Path returns the file the store is kept in.
func (s *Store) Path() string { return s.path }

// Check decides for a peer that presents ski (any form NormalizeSKI
// accepts) and, when known, shipID ("" if not yet known). A known SKI keeps
// its state; an unknown one becomes Pending, or Trusted when autoAccept is
// set, which also trusts a pending entry (but never a rejected one). The
// entry's LastSeen is updated and a missing SHIP ID stored; a SHIP ID that
// differs from the stored one gives the entry's state and
// ErrSHIPIDMismatch. Check fails, and changes nothing, if the store cannot
// be written.
func (s *Store) Check(ski, shipID string, autoAccept bool) (Decision, error) {
	ski, err := identity.NormalizeSKI(ski)
	if err != nil {
		return Rejected, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e, known := s.entries[ski]
	if !known {
		e = Entry{SKI: ski, SHIPID: shipID, State: Pending, FirstSeen: now, LastSeen: now}
		if autoAccept {
			e.State, e.AutoAccepted = Trusted, true
		}
		if err := s.commit(e); err != nil {
			return Rejected, err
		}
		return e.State, nil
	}
	if shipID != "" && e.SHIPID != "" && shipID != e.SHIPID {
		return e.State, fmt.Errorf("%w: %s presents %q, stored %q", ErrSHIPIDMismatch, ski, shipID, e.SHIPID)
	}
	old := e
	e.LastSeen = now
	if e.SHIPID == "" {
		e.SHIPID = shipID
	}
	if autoAccept && e.State == Pending {
		e.State, e.AutoAccepted = Trusted, true
	}
	if e.SHIPID == old.SHIPID && e.State == old.State && now.Sub(old.LastSeen) < lastSeenResolution {
		s.entries[ski] = e // LastSeen only: not worth a write
		return e.State, nil
	}
	if err := s.commit(e); err != nil {
		return old.State, err
	}
	return e.State, nil
}

// LearnSHIPID records the SHIP ID a peer announced (accessMethods.id) if
// its entry has none; if it has another, it returns ErrSHIPIDMismatch.
func (s *Store) LearnSHIPID(ski, shipID string) error {
	if err := identity.ValidateSHIPID(shipID); err != nil {
		return err
	}
	ski, err := identity.NormalizeSKI(ski)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[ski]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s", ErrNotFound, ski)
	case e.SHIPID == shipID:
		return nil
	case e.SHIPID != "":
		return fmt.Errorf("%w: %s presents %q, stored %q", ErrSHIPIDMismatch, ski, shipID, e.SHIPID)
	}
	e.SHIPID = shipID
	return s.commit(e)
}

// Approve trusts ski. An SKI not seen yet is added as trusted (pairing in
// advance, from mDNS or a QR code). Waiters are woken.
func (s *Store) Approve(ski string) error { return s.setState(ski, "", Trusted) }

// ApproveWithSHIPID is Approve that also sets the SHIP ID expected from ski.
func (s *Store) ApproveWithSHIPID(ski, shipID string) error {
	if err := identity.ValidateSHIPID(shipID); err != nil {
		return err
	}
	return s.setState(ski, shipID, Trusted)
}

// Reject marks ski as rejected; an SKI not seen yet is added so that it is
// refused from its first connection. Waiters are woken. A connection of
// ski that is already running is not closed here: Subscribe to learn of it.
func (s *Store) Reject(ski string) error { return s.setState(ski, "", Rejected) }

func (s *Store) setState(ski, shipID string, st State) error {
	ski, err := identity.NormalizeSKI(ski)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[ski]
	if !ok {
		e = Entry{SKI: ski}
	}
	if shipID != "" {
		e.SHIPID = shipID
	}
	e.State, e.AutoAccepted = st, false
	return s.commit(e)
}

// Remove forgets ski (unpairing). It returns ErrNotFound if there is no
// entry. Waiters are woken and get ErrNotFound.
func (s *Store) Remove(ski string) error {
	ski, err := identity.NormalizeSKI(ski)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[ski]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, ski)
	}
	delete(s.entries, ski)
	if err := s.save(); err != nil {
		s.entries[ski] = e
		return err
	}
	s.changed(Event{Entry: e, Removed: true})
	return nil
}

// Get returns the entry of ski.
func (s *Store) Get(ski string) (Entry, bool) {
	ski, err := identity.NormalizeSKI(ski)
	if err != nil {
		return Entry{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[ski]
	return e, ok
}

// List returns all entries, sorted by SKI.
func (s *Store) List() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked()
}

// Wait blocks while ski is pending and returns its new state (Trusted or
// Rejected) once decided, at once if it is not pending. It returns
// ErrNotFound if ski has no entry or loses it while waiting (Remove, or
// dropped by the MaxPending bound), and Pending with ctx.Err() when ctx ends
// first: the session in hello "pending" passes a context bound to its
// hello timer.
func (s *Store) Wait(ctx context.Context, ski string) (Decision, error) {
	ski, err := identity.NormalizeSKI(ski)
	if err != nil {
		return Rejected, err
	}
	for {
		s.mu.Lock()
		e, ok := s.entries[ski]
		if !ok {
			s.mu.Unlock()
			return Rejected, fmt.Errorf("%w: %s", ErrNotFound, ski)
		}
		if e.State != Pending {
			s.mu.Unlock()
			return e.State, nil
		}
		ch, ok := s.waiters[ski]
		if !ok {
			ch = make(chan struct{})
			s.waiters[ski] = ch
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Pending, ctx.Err()
		}
	}
}

// Subscribe returns a channel of changes (new, changed and removed entries;
// not LastSeen updates) and a function that ends the subscription and closes
// the channel. Events are dropped, not queued, when the channel's buffer of
// size buf is full: a slow subscriber cannot stall the store, and should
// re-read List after a burst.
func (s *Store) Subscribe(buf int) (<-chan Event, func()) {
	ch := make(chan Event, max(buf, 1))
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, ch)
			close(ch)
			s.mu.Unlock()
		})
	}
}

// commit stores e, enforces the bounds, writes the file and, once written,
// notifies. On a write error the store is left as it was.
func (s *Store) commit(e Entry) error {
	prev, existed := s.entries[e.SKI]
	s.entries[e.SKI] = e
	var evicted []Entry
	if e.State == Pending {
		evicted = append(evicted, s.evictLocked(func(x Entry) bool { return x.State == Pending && x.SKI != e.SKI }, s.maxPending-1)...)
	}
	if e.AutoAccepted {
		evicted = append(evicted, s.evictLocked(func(x Entry) bool { return x.AutoAccepted && x.SKI != e.SKI }, s.maxAuto-1)...)
	}
	if err := s.save(); err != nil {
		for _, x := range evicted {
			s.entries[x.SKI] = x
		}
		if existed {
			s.entries[e.SKI] = prev
		} else {
			delete(s.entries, e.SKI)
		}
		return err
	}
	for _, x := range evicted {
		s.changed(Event{Entry: x, Removed: true})
	}
	if !existed || prev != e {
		s.changed(Event{Entry: e})
	}
	return nil
}

// evictLocked drops the least recently seen entries matching class until at
// most limit remain, and returns them. commit excludes the entry it stores
// from class and passes the bound minus one, so the newcomer stays.
func (s *Store) evictLocked(class func(Entry) bool, limit int) []Entry {
	var members []Entry
	for _, x := range s.entries {
		if class(x) {
			members = append(members, x)
		}
	}
	if len(members) <= limit {
		return nil
	}
	slices.SortFunc(members, func(a, b Entry) int {
		return cmp.Or(a.LastSeen.Compare(b.LastSeen), a.FirstSeen.Compare(b.FirstSeen), cmp.Compare(a.SKI, b.SKI))
	})
	drop := members[:len(members)-limit]
	for _, x := range drop {
		delete(s.entries, x.SKI)
	}
	return drop
}

// changed wakes the waiters of the entry and tells subscribers.
func (s *Store) changed(ev Event) {
	if ch, ok := s.waiters[ev.Entry.SKI]; ok {
		close(ch)
		delete(s.waiters, ev.Entry.SKI)
	}
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (s *Store) sortedLocked() []Entry {
	out := make([]Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.SKI, b.SKI) })
	return out
}

func (s *Store) save() error {
	data, err := json.MarshalIndent(file{Version: fileVersion, Peers: s.sortedLocked()}, "", "  ")
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	return s.writeFile(s.path, append(data, '\n'))
}

func tempPattern(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
}

// writeFile writes the store's file (mode 0600) atomically.
func writeFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	return nil
}
