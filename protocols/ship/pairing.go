package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// Pairing commands, for the gateway's MQTT command topic
// ({prefix}/$gateway/{id}/cmd/{name}): ship-approve, ship-reject and
// ship-remove take the SKI as a JSON string or {"ski":"..."}; ship-peers
// returns the trust store's entries.
const (
	CommandApprove = "ship-approve"
	CommandReject  = "ship-reject"
	CommandRemove  = "ship-remove"
	CommandPeers   = "ship-peers"
)

// GatewayCommands implements module.GatewayCommander.
func (p *Protocol) GatewayCommands() []string {
	return []string{CommandApprove, CommandReject, CommandRemove, CommandPeers}
}

// GatewayCommand runs a pairing command (module.GatewayCommander).
func (p *Protocol) GatewayCommand(name string, args json.RawMessage) (any, error) {
	store := p.opts.Trust
	var act func(string) error
	switch name {
	case CommandPeers:
		return p.peerList(), nil
	case CommandApprove:
		act = store.Approve
	case CommandReject:
		act = store.Reject
	case CommandRemove:
		act = store.Remove
	default:
		return nil, fmt.Errorf("unknown command %q (SHIP takes %s)", name, strings.Join(p.GatewayCommands(), ", "))
	}
	ski, err := skiArgument(args)
	if err != nil {
		return nil, err
	}
	if err := act(ski); err != nil {
		if errors.Is(err, trust.ErrNotFound) {
			return nil, errors.New("unknown SKI")
		}
		return nil, err
	}
	e, _ := store.Get(ski)
	return e, nil
}

// skiArgument reads "SKI" or {"ski":"SKI"}.
func skiArgument(args json.RawMessage) (string, error) {
	var raw string
	if err := json.Unmarshal(args, &raw); err != nil {
		var obj struct {
			SKI string `json:"ski"`
		}
		if err := json.Unmarshal(args, &obj); err != nil {
			return "", errors.New(`bad-request: give the SKI as "..." or {"ski":"..."}`)
		}
		raw = obj.SKI
	}
	ski, err := identity.NormalizeSKI(raw)
	if err != nil {
		return "", errors.New("bad-request: not an SKI (40 hex digits)")
	}
	return ski, nil
}
