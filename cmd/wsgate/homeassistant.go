package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/wsgate/wsgate/gateway/homeassistant"
)

const homeAssistantUsage = `usage: wsgate homeassistant <command> [-config FILE] [-admin ADDRESS]

Home Assistant discovery of the running gateway (docs/HOMEASSISTANT.md),
through its admin API.

commands:
  devices      list the devices whose configurations the broker holds
  remove ID    remove a device that is gone for good from Home Assistant
               (refused while it is connected, and for local devices)
`

// homeAssistantCommand runs `wsgate homeassistant ...`.
func homeAssistantCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("wsgate homeassistant", flag.ContinueOnError)
	flags.SetOutput(io.Discard) // the usage says it better
	configPath := flags.String("config", "", "configuration file (TOML)")
	adminAddr := flags.String("admin", "", "admin API address (default: admin.address of the config)")
	positional, err := parseInterspersed(flags, args)
	switch {
	case errors.Is(err, flag.ErrHelp), len(positional) == 1 && positional[0] == "help":
		fmt.Fprint(stdout, homeAssistantUsage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "wsgate homeassistant: %v\n\n%s", err, homeAssistantUsage)
		return 2
	case len(positional) == 1 && positional[0] == "devices", len(positional) == 2 && positional[0] == "remove":
	default:
		fmt.Fprint(stderr, homeAssistantUsage)
		return 2
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		reportConfigError(stderr, err)
		return 1
	}
	addr := *adminAddr
	if addr == "" {
		addr = cfg.Admin.Address
	}
	api := adminClient{addr: addr, token: cfg.Admin.Token}
	if positional[0] == "devices" {
		var list []homeassistant.Announced
		if err := api.Call(ctx, http.MethodGet, "/homeassistant/devices", &list); err != nil {
			fmt.Fprintf(stderr, "wsgate homeassistant devices: %v\n", err)
			return 1
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "DEVICE\tLOCAL\tENTITIES")
		for _, a := range list {
			var entities []string
			for key, platform := range a.Entities {
				entities = append(entities, key+" ("+platform+")")
			}
			slices.Sort(entities)
			fmt.Fprintf(w, "%s\t%v\t%s\n", a.Device, a.Local, strings.Join(entities, ", "))
		}
		_ = w.Flush()
		return 0
	}
	var removed struct {
		Removed []string `json:"removed"`
	}
	if err := api.Call(ctx, http.MethodDelete, "/homeassistant/devices/"+url.PathEscape(positional[1]), &removed); err != nil {
		fmt.Fprintf(stderr, "wsgate homeassistant remove: %v\n", err)
		return 1
	}
	for _, topic := range removed.Removed {
		fmt.Fprintln(stdout, "cleared", topic)
	}
	return 0
}
