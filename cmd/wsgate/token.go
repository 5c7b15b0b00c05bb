package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wsgate/wsgate/gateway/auth"
)

const tokenUsage = `usage: wsgate token new | wsgate token hash [FILE]

  new         print a new random token (for a device, or admin.token_file)
  hash [FILE] print the hash of the token on the first line of FILE (or of
              standard input), for a [[auth.tokens]] entry: the configuration
              keeps the hash, the device keeps the token

  wsgate token new | tee kitchen.token | wsgate token hash
`

// tokenCommand runs `wsgate token ...`.
func tokenCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return 2
	}
	switch cmd, args := args[0], args[1:]; {
	case cmd == "new" && len(args) == 0:
		fmt.Fprintln(stdout, auth.NewToken())
		return 0
	case cmd == "hash" && len(args) <= 1:
		in := stdin
		if len(args) == 1 {
			f, err := os.Open(args[0])
			if err != nil {
				fmt.Fprintln(stderr, "wsgate token hash:", err)
				return 1
			}
			defer f.Close()
			in = f
		}
		line, err := bufio.NewReader(in).ReadString('\n')
		token := strings.TrimSpace(line)
		if token == "" {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("no token on the first line of the input")
			}
			fmt.Fprintln(stderr, "wsgate token hash:", err)
			return 1
		}
		h, err := auth.Hash(token)
		if err != nil {
			fmt.Fprintln(stderr, "wsgate token hash:", err)
			return 1
		}
		fmt.Fprintln(stdout, h)
		return 0
	case cmd == "help" || cmd == "-h" || cmd == "--help":
		fmt.Fprint(stdout, tokenUsage)
		return 0
	}
	fmt.Fprint(stderr, tokenUsage)
	return 2
}
