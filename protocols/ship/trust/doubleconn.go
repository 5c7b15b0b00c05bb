package trust

import (
	"strings"

	"github.com/wsgate/wsgate/protocols/ship/identity"
)

// KeepNewer states the double-connection rule of SHIP 12.2.2 (ship.md
// section 9, "Double connections"): when two connections exist between the
// same pair of nodes, "the node with the higher SKI keeps the most recent
// connection and closes the others".
//
// It reports whether the local node is that node, i.e. whether localSKI is
// higher than peerSKI. If true, the local node keeps the newest connection
// to the peer and closes the older ones (ship-go closes them with WebSocket
// code 1000 "double connection"). If false, the peer decides: the local node
// closes neither and waits for the peer to close the connection it drops.
// SKIs are compared as 160-bit numbers, which for the canonical 40-hex
// form is string order; forms NormalizeSKI accepts are normalised first.
// Equal SKIs (a node connected to itself) give false; such a connection
// should be refused before this point.
func KeepNewer(localSKI, peerSKI string) bool {
	return canonical(localSKI) > canonical(peerSKI)
}

// KeepOutgoing states ship-go's simplified rule, for peers that follow it
// (ship.md section 9 and quirk Q9): of two connections, the one initiated
// by the node with the higher SKI is kept. It reports whether the local
// node keeps the connection it dialled (true) or the one it accepted
// (false). The two rules agree only when the newest connection is the one
// the higher node dialled; which one wsgate applies is the SHIP session's
// choice.
func KeepOutgoing(localSKI, peerSKI string) bool {
	return canonical(localSKI) > canonical(peerSKI)
}

func canonical(ski string) string {
	if n, err := identity.NormalizeSKI(ski); err == nil {
		return n
	}
	return strings.ToLower(ski)
}
