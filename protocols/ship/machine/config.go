package machine

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The defaults of Config (section 7, with the recommendations made there).
const (
	DefaultCMITimeout             = 30 * time.Second
	DefaultHelloInit              = 120 * time.Second
	DefaultHelloProlongThrInc     = 30 * time.Second
	DefaultHelloProlongWaitingGap = 15 * time.Second
	DefaultHelloProlongMin        = 1 * time.Second
	DefaultProtocolHandshakeWait  = 10 * time.Second
	DefaultPinWait                = 10 * time.Second
	DefaultAccessMethodsWait      = 10 * time.Second
	DefaultCloseWait              = 500 * time.Millisecond
	DefaultAbortDelay             = 1 * time.Second
	DefaultMaxEarly               = 64
)

// MaxSHIPIDLength is the longest SHIP ID accepted (section 6.5, from
// jeebus: 63 bytes).
const MaxSHIPIDLength = 63

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("ship machine: invalid config")

// Config configures a Machine. A zero duration or count takes its default.
type Config struct {
	// LocalSHIPID is our SHIP ID, sent in accessMethods (section 6.5).
	// Required.
	LocalSHIPID string
	// PeerSHIPID is the SHIP ID we expect from the peer (known from pairing
	// or mDNS). Empty accepts any; otherwise a different accessMethods id
	// closes the connection with 4450 "SHIP id mismatch".
	PeerSHIPID string
	// AutoAccept says the peer is trusted already (its SKI is in the trust
	// store, or auto-accept is on): the hello goes straight to ready. When
	// false the machine says pending, emits NeedsTrust and waits for
	// Approve or Reject (section 6.2).
	AutoAccept bool

	// CMITimeout is how long to wait for the peer's CMI (section 6.1).
	CMITimeout time.Duration
	// HelloInit is T_hello_init: the Wait-For-Ready timer and the waiting
	// value of every hello we send (section 6.2). At most 2^32-1 ms.
	HelloInit time.Duration
	// HelloProlongThrInc is T_hello_prolong_thr_inc: a peer's waiting at
	// least this long makes us ask for prolongation before it runs out.
	HelloProlongThrInc time.Duration
	// HelloProlongWaitingGap is T_hello_prolong_waiting_gap: we ask for
	// prolongation this long before the peer's waiting runs out (the W-15 s
	// rule of section 6.2, not ship-go's W-30 s). Must be less than
	// HelloProlongThrInc.
	HelloProlongWaitingGap time.Duration
	// HelloProlongMin is T_hello_prolong_min: a peer's waiting below it
	// aborts the hello.
	HelloProlongMin time.Duration
	// ProtocolHandshakeWait is the wait for each protocol handshake step
	// (section 6.3).
	ProtocolHandshakeWait time.Duration
	// PinWait is the wait for the peer's connectionPinState. Section 7 has
	// no value; wsgate's choice.
	PinWait time.Duration
	// AccessMethodsWait is the wait for the peer's accessMethods (section
	// 6.5).
	AccessMethodsWait time.Duration
	// CloseWait is the maxTime we announce and wait for a confirm, and the
	// delay between our confirm and our WebSocket close (section 6.7).
	CloseWait time.Duration
	// AbortDelay is the delay between an aborted hello and the WebSocket
	// close 4452 (section 9: about 1 s).
	AbortDelay time.Duration
	// MaxEarly caps the messages buffered before they can be handled
	// (access methods during PIN, data before Complete); one more is a
	// protocol error.
	MaxEarly int
}

// withDefaults returns c with zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.CMITimeout, DefaultCMITimeout)
	def(&c.HelloInit, DefaultHelloInit)
	def(&c.HelloProlongThrInc, DefaultHelloProlongThrInc)
	def(&c.HelloProlongWaitingGap, DefaultHelloProlongWaitingGap)
	def(&c.HelloProlongMin, DefaultHelloProlongMin)
	def(&c.ProtocolHandshakeWait, DefaultProtocolHandshakeWait)
	def(&c.PinWait, DefaultPinWait)
	def(&c.AccessMethodsWait, DefaultAccessMethodsWait)
	def(&c.CloseWait, DefaultCloseWait)
	def(&c.AbortDelay, DefaultAbortDelay)
	if c.MaxEarly == 0 {
		c.MaxEarly = DefaultMaxEarly
	}
	return c
}

// Validate reports what is wrong with c (after defaults are applied),
// wrapped in ErrConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.LocalSHIPID == "":
		return fmt.Errorf("%w: LocalSHIPID is required", ErrConfig)
	case len(c.LocalSHIPID) > MaxSHIPIDLength:
		return fmt.Errorf("%w: LocalSHIPID longer than %d bytes", ErrConfig, MaxSHIPIDLength)
	case c.MaxEarly < 0:
		return fmt.Errorf("%w: MaxEarly is negative", ErrConfig)
	case c.HelloProlongWaitingGap >= c.HelloProlongThrInc:
		return fmt.Errorf("%w: HelloProlongWaitingGap %v must be less than HelloProlongThrInc %v",
			ErrConfig, c.HelloProlongWaitingGap, c.HelloProlongThrInc)
	}
	for name, d := range map[string]time.Duration{
		"CMITimeout": c.CMITimeout, "HelloInit": c.HelloInit,
		"HelloProlongThrInc": c.HelloProlongThrInc, "HelloProlongWaitingGap": c.HelloProlongWaitingGap,
		"HelloProlongMin": c.HelloProlongMin, "ProtocolHandshakeWait": c.ProtocolHandshakeWait,
		"PinWait": c.PinWait, "AccessMethodsWait": c.AccessMethodsWait,
		"CloseWait": c.CloseWait, "AbortDelay": c.AbortDelay,
	} {
		if d < 0 {
			return fmt.Errorf("%w: %s is negative", ErrConfig, name)
		}
		if d/time.Millisecond > math.MaxUint32 {
			return fmt.Errorf("%w: %s does not fit in 32-bit milliseconds", ErrConfig, name)
		}
	}
	return nil
}

// millis converts d to the milliseconds of a SHIP waiting or maxTime
// (Validate has checked that it fits).
func millis(d time.Duration) *uint32 {
	v := uint32(d / time.Millisecond)
	return &v
}
