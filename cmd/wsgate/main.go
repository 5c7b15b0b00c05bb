// Command wsgate is the WebSocket device gateway: it accepts devices over
// WebSocket, speaks their subprotocol and bridges them to MQTT.
//
//	wsgate run [-config FILE]        serve (embedded defaults without a file)
//	wsgate check -config FILE        validate a configuration file
//	wsgate protocols [-config FILE]  list the protocols in preference order
//	wsgate reload [-config FILE]     make the running gateway re-read its configuration
//	wsgate token new|hash [FILE]     make a token, hash one for the configuration
//	wsgate device [flags]            act as a done device (wsgate device -help)
//	wsgate homeassistant devices|remove ID   Home Assistant discovery, through the admin API
//	wsgate <protocol> <command> ...  a built-in protocol's commands (wsgate <protocol> help)
//	wsgate version                   print the version
//
// The built-in protocols are those protocols/all registers; the binary
// knows them only through the protocols/module registry.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/hashicorp/go-plugin"

	_ "github.com/wsgate/wsgate/protocols/all" // the built-in protocols
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	code := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	plugin.CleanupClients() // no plugin process outlives the gateway
	os.Exit(code)
}

// usage lists the commands, with those of the built-in protocols.
func usage() string {
	var b strings.Builder
	b.WriteString(`usage: wsgate <command> [flags]

commands:
  run [-config FILE]        run the gateway (embedded defaults without a file)
  check -config FILE        validate a configuration file and list every problem
  protocols [-config FILE]  list the enabled protocols in preference order
  reload [-config FILE] [-admin ADDRESS]
                            make the running gateway re-read its configuration
  token new|hash [FILE]     make a device or admin token, hash one for [[auth.tokens]]
  device [-url URL] [-id ID] [-pub CH=JSON]...
                            act as a done device: publish readings, answer commands
  homeassistant devices|remove ID
                            the Home Assistant announcements of the running gateway
`)
	for _, name := range subcommandModules() {
		fmt.Fprintf(&b, "  %-24s  the %s protocol's commands (wsgate %s help)\n", name+" <command>", name, name)
	}
	b.WriteString("  version                   print the version\n")
	return b.String()
}

// run executes one command and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	cmd, args := args[0], args[1:]
	flags := flag.NewFlagSet("wsgate "+cmd, flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "configuration file (TOML)")
	var adminAddr *string
	switch {
	case cmd == "reload":
		adminAddr = flags.String("admin", "", "admin API address (default: admin.address of the config)")
	case cmd == "run" || cmd == "check" || cmd == "protocols":
	case cmd == "version" || cmd == "-version" || cmd == "--version":
		fmt.Fprintln(stdout, "wsgate", versionString())
		return 0
	case cmd == "help" || cmd == "-h" || cmd == "-help" || cmd == "--help":
		fmt.Fprint(stdout, usage())
		return 0
	case cmd == "token":
		return tokenCommand(args, os.Stdin, stdout, stderr)
	case cmd == "device":
		return deviceCommand(ctx, args, os.Stdin, stdout, stderr)
	case cmd == "homeassistant":
		return homeAssistantCommand(ctx, args, stdout, stderr)
	case slices.Contains(subcommandModules(), cmd):
		return protocolCommand(ctx, cmd, args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "wsgate: unknown command %q\n\n%s", cmd, usage())
		return 2
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "wsgate %s: unexpected argument %q\n", cmd, flags.Arg(0))
		return 2
	}
	switch cmd {
	case "check":
		return check(*configPath, stdout, stderr)
	case "protocols":
		return listProtocols(*configPath, stdout, stderr)
	case "reload":
		return reloadCommand(ctx, *configPath, *adminAddr, stdout, stderr)
	default:
		return serve(ctx, *configPath, stderr)
	}
}

func versionString() string {
	if version != "dev" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return version
}
