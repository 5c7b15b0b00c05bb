// Package ownership decides, without trusting any host's clock, which
// session of a device is the live one when several gateway instances share
// one MQTT broker.
//
// Every session a gateway announces is a Claim on its device with a stamp:
// one more than every stamp the gateway knows for that device (a Lamport
// clock per device). Claims are totally ordered by stamp, then gateway id,
// then session id, so every instance that has seen the same claims agrees
// on the latest one, whatever their clocks say and in whatever order the
// claims arrived. The latest claim wins; the gateway holding an earlier one
// closes its session. A claim's Since is the claimant's wall-clock time,
// for people to read; it is never compared.
//
// A Table also follows which gateways are alive (their retained status and
// Last Will), so that the claims of a gateway that died are not taken for
// live sessions, and names the gateway that does the fleet's chores.
//
// The package knows nothing of MQTT: the bridge feeds it the claims and
// gateway statuses it receives and asks it who owns a device.
package ownership

import (
	"cmp"
	"sync"
	"time"
)

// Claim is a gateway's claim on a device for one of its sessions, and
// whether that session is still on.
type Claim struct {
	Gateway string
	Session string
	Stamp   uint64
	Online  bool      // false once the session has ended; its stamp stays the device's latest
	Since   time.Time // on the claimant's clock; shown, never compared
	// Protocol is the session's protocol, carried along for its status;
	// never compared.
	Protocol string
}

// compareKey orders claims by stamp, then gateway, then session: a total
// order every instance computes alike.
func compareKey(a, b Claim) int {
	return cmp.Or(cmp.Compare(a.Stamp, b.Stamp), cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.Session, b.Session))
}

// Same reports whether c and o are claims of the same session (online or
// ended).
func (c Claim) Same(o Claim) bool { return compareKey(c, o) == 0 }

// After reports whether c supersedes o: a later claim, or the end of the
// session o announced.
func (c Claim) After(o Claim) bool {
	if k := compareKey(c, o); k != 0 {
		return k > 0
	}
	return !c.Online && o.Online
}

// Table is one gateway's knowledge of the claims on devices and of the
// other gateways. It is safe for concurrent use.
type Table struct {
	self  string
	clock func() time.Time

	mu       sync.Mutex
	devices  map[string]*record
	gateways map[string]bool   // gateway id -> alive, for those whose status is known
	names    map[string]string // one copy of each gateway id, shared by the records
}

type record struct {
	latest Claim  // the latest claim seen at the broker; zero Stamp and Gateway before any
	seen   bool   // latest holds a claim
	issued uint64 // the highest stamp this gateway has issued for the device
}

// New returns the table of gateway self. clock gives the Since of its
// claims; nil means time.Now.
func New(self string, clock func() time.Time) *Table {
	if clock == nil {
		clock = time.Now
	}
	return &Table{self: self, clock: clock, devices: make(map[string]*record),
		gateways: make(map[string]bool), names: make(map[string]string)}
}

func (t *Table) record(device string) *record {
	r := t.devices[device]
	if r == nil {
		r = &record{}
		t.devices[device] = r
	}
	return r
}

// Observe records a claim seen at the broker (its own claims too, as they
// come back) and reports whether it is now the device's latest.
func (t *Table) Observe(device string, c Claim) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.record(device)
	if r.seen && !c.After(r.latest) {
		return c.Same(r.latest) && c.Online == r.latest.Online
	}
	if name, ok := t.names[c.Gateway]; ok {
		c.Gateway = name
	} else if len(t.names) < maxNames {
		t.names[c.Gateway] = c.Gateway
	}
	r.latest, r.seen = c, true
	return true
}

// Adopt takes this gateway's own claim, which the broker has accepted, for
// the device's latest before it comes back through the subscription, but
// only while nobody holds the device as far as the table knows: then no
// other gateway delivers its commands meanwhile, and a command that
// arrives before the claim's echo is not left to nobody. It reports
// whether it did.
func (t *Table) Adopt(device string, c Claim) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.record(device)
	if c.Gateway != t.self || !c.Online || r.seen && (!c.After(r.latest) ||
		r.latest.Online && t.aliveLocked(r.latest.Gateway) && !c.Same(r.latest)) {
		return false
	}
	r.latest, r.seen = c, true
	return true
}

// maxNames bounds the interned gateway ids: a fleet has a handful, and
// statuses naming thousands would come from somewhere else.
const maxNames = 1024

// Claim issues this gateway's claim for a new session of device: its stamp
// is one more than every stamp seen or issued for the device, so it
// supersedes every claim this gateway knows of. The claim counts once it
// is observed coming back from the broker.
func (t *Table) Claim(device, session string) Claim {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.record(device)
	r.issued = max(r.issued, r.latest.Stamp) + 1
	return Claim{Gateway: t.self, Session: session, Stamp: r.issued, Online: true, Since: t.clock()}
}

// Latest returns the latest claim seen for device.
func (t *Table) Latest(device string) (Claim, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.devices[device]; r != nil && r.seen {
		return r.latest, true
	}
	return Claim{}, false
}

// Owner returns the claim of the session that holds device: the latest
// claim, if its session is on and its gateway is not known to be dead.
func (t *Table) Owner(device string) (Claim, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.devices[device]
	if r == nil || !r.seen || !r.latest.Online || !t.aliveLocked(r.latest.Gateway) {
		return Claim{}, false
	}
	return r.latest, true
}

// Superseded reports whether a claim of this gateway has been overtaken by
// a later claim on device (another session's, or its own end).
func (t *Table) Superseded(device string, c Claim) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.devices[device]
	return r != nil && r.seen && !r.latest.Same(c) && r.latest.After(c)
}

// SetGateway records a gateway's status: alive (its retained "online") or
// dead (its Last Will, or its "offline" at a clean stop). It reports
// whether that changed what the table knew.
func (t *Table) SetGateway(id string, alive bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was, known := t.gateways[id]
	if !known && len(t.gateways) >= maxNames {
		return false
	}
	t.gateways[id] = alive
	return !known || was != alive
}

// Alive reports whether a gateway is taken for alive: not known to be
// dead.
func (t *Table) Alive(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.aliveLocked(id)
}

// aliveLocked: a gateway whose status was never seen is taken for alive;
// only an explicit offline makes its claims orphans.
func (t *Table) aliveLocked(id string) bool {
	alive, known := t.gateways[id]
	return alive || !known
}

// Leader returns the gateway that does the fleet's chores (marking the
// devices of a dead gateway offline, answering commands to absent devices
// when the broker has no shared subscriptions): the lowest id among the
// gateways known to be alive. Instances that see the same statuses agree.
func (t *Table) Leader() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	leader := ""
	for id, alive := range t.gateways {
		if alive && (leader == "" || id < leader) {
			leader = id
		}
	}
	return leader
}

// Orphan is the online claim of a session nobody holds any more.
type Orphan struct {
	Device string
	Claim  Claim
}

// Orphans lists the devices whose latest claim is online at a gateway
// known to be dead, or online at this gateway while held reports that it
// does not hold the device (left behind by a crash before a restart).
func (t *Table) Orphans(held func(device string) bool) []Orphan {
	var dead, own []Orphan
	t.mu.Lock()
	for device, r := range t.devices {
		c := r.latest
		switch {
		case !r.seen || !c.Online:
		case c.Gateway == t.self:
			own = append(own, Orphan{Device: device, Claim: c})
		case !t.aliveLocked(c.Gateway):
			dead = append(dead, Orphan{Device: device, Claim: c})
		}
	}
	t.mu.Unlock()
	for _, o := range own { // held is asked without the table's lock
		if !held(o.Device) {
			dead = append(dead, o)
		}
	}
	return dead
}

// Now is the table's clock.
func (t *Table) Now() time.Time { return t.clock() }
