package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wsgate/wsgate/protocols/module"
)

// protocolCommand runs `wsgate <protocol> ...`: it takes the binary's own
// flags (-config, -admin) wherever they stand among the arguments, loads
// the configuration and hands the rest to the protocol.
func protocolCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	m, _ := module.Lookup(name)
	usage := m.NewConfig().(module.Subcommand).SubcommandUsage()
	flags := flag.NewFlagSet("wsgate "+name, flag.ContinueOnError)
	flags.SetOutput(io.Discard) // the protocol's usage says it better
	configPath := flags.String("config", "", "configuration file (TOML)")
	adminAddr := flags.String("admin", "", "admin API address (default: admin.address of the config)")
	positional, err := parseInterspersed(flags, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "wsgate %s: %v\n\n%s", name, err, usage)
		return 2
	case len(positional) == 0:
		fmt.Fprint(stderr, usage)
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
	env := module.CommandEnv{Stdout: stdout, Stderr: stderr, Settings: cfg.Settings(), Admin: adminClient{addr: addr, token: cfg.Admin.Token}}
	return cfg.Protocols.Modules[name].(module.Subcommand).RunSubcommand(ctx, env, positional)
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments (`approve SKI -admin ADDR`), which the flag
// package alone stops at; after "--" everything is positional.
func parseInterspersed(flags *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		rest := args
		if err := flags.Parse(args); err != nil {
			return nil, err
		}
		args = flags.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if consumed := len(rest) - len(args); consumed > 0 && rest[consumed-1] == "--" {
			return append(positional, args...), nil
		}
		positional, args = append(positional, args[0]), args[1:]
	}
}

// adminClient calls the running gateway's admin API (module.AdminAPI),
// with the bearer token of admin.token_file when there is one.
type adminClient struct{ addr, token string }

func (a adminClient) Call(ctx context.Context, method, path string, out any) error {
	if a.addr == "" {
		return errors.New("the admin API is off (admin.address is empty); give -admin ADDRESS")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+loopbackHost(a.addr)+path, nil)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the gateway running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error    string   `json:"error"`
			Problems []string `json:"problems"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(strings.Join(append([]string{e.Error}, e.Problems...), "\n  "))
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// loopbackHost turns a listen address into one to connect to.
func loopbackHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

var _ module.AdminAPI = adminClient{}
