package ship

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/wsgate/wsgate/protocols/module"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

const cliUsage = `usage: wsgate ship <command> [SKI] [-config FILE] [-admin ADDRESS]

commands:
  cert            print the local SKI and SHIP ID (makes the key and
                  certificate when there are none yet)
  peers           list the known SHIP peers and their trust state
  approve SKI     trust a peer: a pending one goes on, an unknown one is
                  paired in advance
  reject SKI      refuse a peer (its connection is closed)
  remove SKI      forget a peer (unpair)

peers, approve, reject and remove talk to the running gateway's admin API
(admin.address of the config, or -admin). Flags may come before or after
the SKI.
`

// SubcommandUsage implements module.Subcommand.
func (c *Config) SubcommandUsage() string { return cliUsage }

// RunSubcommand implements module.Subcommand: `wsgate ship ...`.
func (c *Config) RunSubcommand(ctx context.Context, env module.CommandEnv, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, cliUsage)
		return 2
	}
	cmd, args := args[0], args[1:]
	wantSKI := false
	switch cmd {
	case "cert", "peers":
	case "approve", "reject", "remove":
		wantSKI = true
	case "help", "-h", "-help", "--help":
		fmt.Fprint(env.Stdout, cliUsage)
		return 0
	default:
		fmt.Fprintf(env.Stderr, "wsgate ship: unknown command %q\n\n%s", cmd, cliUsage)
		return 2
	}
	var ski string
	switch {
	case wantSKI && len(args) != 1:
		fmt.Fprintf(env.Stderr, "wsgate ship %s: give one SKI\n\n%s", cmd, cliUsage)
		return 2
	case wantSKI:
		var err error
		if ski, err = identity.NormalizeSKI(args[0]); err != nil {
			fmt.Fprintf(env.Stderr, "wsgate ship %s: %q is not an SKI (40 hex digits)\n", cmd, args[0])
			return 2
		}
	case len(args) > 0:
		fmt.Fprintf(env.Stderr, "wsgate ship %s: unexpected argument %q\n", cmd, args[0])
		return 2
	}
	switch cmd {
	case "cert":
		id, err := c.loadIdentity(env.Settings)
		if err != nil {
			fmt.Fprintln(env.Stderr, "wsgate:", err)
			return 1
		}
		fmt.Fprintf(env.Stdout, "SKI:     %s\nSHIP ID: %s\ncert:    %s\n", id.SKI, id.SHIPID, id.CertPath)
		return 0
	case "peers":
		var list []trust.Entry
		if err := env.Admin.Call(ctx, http.MethodGet, "/ship/peers", &list); err != nil {
			fmt.Fprintln(env.Stderr, "wsgate ship peers:", err)
			return 1
		}
		printPeers(env, list)
		return 0
	}
	method, path := http.MethodPost, "/ship/peers/"+ski+"/"+cmd
	if cmd == "remove" {
		method, path = http.MethodDelete, "/ship/peers/"+ski
	}
	if err := env.Admin.Call(ctx, method, path, nil); err != nil {
		fmt.Fprintf(env.Stderr, "wsgate ship %s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintf(env.Stdout, "%s: %s\n", ski, map[string]string{"approve": "approved", "reject": "rejected", "remove": "removed"}[cmd])
	return 0
}

func printPeers(env module.CommandEnv, list []trust.Entry) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SKI\tSTATE\tSHIP ID\tLAST SEEN\n")
	for _, e := range list {
		seen := "-"
		if !e.LastSeen.IsZero() {
			seen = e.LastSeen.Local().Format(time.DateTime)
		}
		state := string(e.State)
		if e.AutoAccepted {
			state += " (auto)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.SKI, state, cmp.Or(e.SHIPID, "-"), seen)
	}
	tw.Flush()
}
