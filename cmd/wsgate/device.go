package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

const deviceUsage = `usage: wsgate device [flags]

Connect to a gateway as a device that speaks done: say hello, publish
readings, print the commands that arrive and answer them, until Ctrl-C.

  -url URL          the gateway's WebSocket URL (default ws://127.0.0.1:8080/)
  -id ID            the device id (default: this machine's host name)
  -token-file FILE  the device's token (its first line), for a listener with
                    auth = "token"; WSGATE_DEVICE_TOKEN wins over it
  -pub CH=JSON      publish JSON on channel CH; may be given several times
  -every DURATION   publish the -pub readings again every DURATION ("5s");
                    without it they are published once
  -stdin            also publish each line of standard input, as CH=JSON
  -qos 0|1          1 (default): the gateway acknowledges each reading once
                    the broker has it; 0: fire and forget
  -answer ok|error|none
                    answer each command ok, echoing its arguments as the
                    result's data (default); with an error; or not at all
                    (the gateway then answers "timeout")
  -once             exit once the readings are acknowledged, instead of
                    waiting for commands
  -ca FILE          PEM certificates to trust for wss:// (default: the system's)
  -insecure         do not verify a wss:// gateway's certificate

example:
  wsgate device -id kitchen-sensor -pub 'telemetry={"t":21.5,"rh":40}'
`

// Waits of wsgate device; it asserts nothing about the gateway's speed,
// these only keep a dead connection from hanging it.
const (
	deviceHelloTimeout = 10 * time.Second // dial, upgrade, hello and welcome
	deviceWriteTimeout = 10 * time.Second // one WebSocket write
	deviceCloseTimeout = 3 * time.Second  // bye, then the gateway's close
)

// reading is one -pub value: data published on a channel.
type reading struct {
	channel string
	data    json.RawMessage
}

func parseReading(s string) (reading, error) {
	ch, data, ok := strings.Cut(s, "=")
	if !ok || ch == "" {
		return reading{}, fmt.Errorf("%q is not CH=JSON, e.g. telemetry={\"t\":21.5}", s)
	}
	if !json.Valid([]byte(data)) {
		return reading{}, fmt.Errorf("%q: the value is not JSON (a string needs quotes: msg=\"hello\")", s)
	}
	return reading{channel: ch, data: json.RawMessage(data)}, nil
}

// deviceOptions are the flags of `wsgate device`.
type deviceOptions struct {
	url, id, token string
	readings       []reading
	every          time.Duration
	stdin          bool
	qos            int
	answer         string
	once           bool
	tls            *tls.Config
}

// deviceCommand runs `wsgate device`; SIGINT and SIGTERM end it with a
// bye and a normal close.
func deviceCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, status := parseDeviceFlags(args, stdout, stderr)
	if status >= 0 {
		return status
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runDevice(ctx, opts, stdin, stdout, stderr)
}

// parseDeviceFlags returns the options, or the exit status when the
// command is done (help) or wrong (-1 means go on).
func parseDeviceFlags(args []string, stdout, stderr io.Writer) (deviceOptions, int) {
	flags := flag.NewFlagSet("wsgate device", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	o := deviceOptions{}
	flags.StringVar(&o.url, "url", "ws://127.0.0.1:8080/", "")
	flags.StringVar(&o.id, "id", defaultDeviceID(), "")
	tokenFile := flags.String("token-file", "", "")
	flags.Func("pub", "", func(s string) error {
		r, err := parseReading(s)
		o.readings = append(o.readings, r)
		return err
	})
	flags.DurationVar(&o.every, "every", 0, "")
	flags.BoolVar(&o.stdin, "stdin", false, "")
	flags.IntVar(&o.qos, "qos", 1, "")
	flags.StringVar(&o.answer, "answer", "ok", "")
	flags.BoolVar(&o.once, "once", false, "")
	caFile := flags.String("ca", "", "")
	insecure := flags.Bool("insecure", false, "")
	usage := func(format string, args ...any) (deviceOptions, int) {
		fmt.Fprintf(stderr, "wsgate device: "+format+"\n\n%s", append(args, deviceUsage)...)
		return o, 2
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, deviceUsage)
			return o, 0
		}
		return usage("%v", err)
	}
	switch {
	case flags.NArg() > 0:
		return usage("unexpected argument %q", flags.Arg(0))
	case o.qos != 0 && o.qos != 1:
		return usage("-qos %d: 0 or 1", o.qos)
	case o.answer != "ok" && o.answer != "error" && o.answer != "none":
		return usage("-answer %q: ok, error or none", o.answer)
	case o.every < 0 || o.every > 0 && len(o.readings) == 0:
		return usage("-every needs a positive duration and -pub readings to repeat")
	case o.once && o.every > 0:
		return usage("-once and -every exclude each other")
	case o.once && len(o.readings) == 0 && !o.stdin:
		return usage("-once needs readings: -pub or -stdin")
	}
	if tok := os.Getenv("WSGATE_DEVICE_TOKEN"); tok != "" {
		o.token = tok
	} else if *tokenFile != "" {
		data, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "wsgate device:", err)
			return o, 1
		}
		line, _, _ := strings.Cut(string(data), "\n")
		if o.token = strings.TrimSpace(line); o.token == "" {
			fmt.Fprintf(stderr, "wsgate device: no token on the first line of %s\n", *tokenFile)
			return o, 1
		}
	}
	if *caFile != "" || *insecure {
		o.tls = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: *insecure}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				fmt.Fprintln(stderr, "wsgate device:", err)
				return o, 1
			}
			o.tls.RootCAs = x509.NewCertPool()
			if !o.tls.RootCAs.AppendCertsFromPEM(pem) {
				fmt.Fprintf(stderr, "wsgate device: no PEM certificate in %s\n", *caFile)
				return o, 1
			}
		}
	}
	return o, -1
}

// defaultDeviceID is the host name, reduced to the characters of a done
// device id.
func defaultDeviceID() string {
	name, _ := os.Hostname()
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, name)
	if name == "" {
		return "wsgate-device"
	}
	return name
}

// inbound is what the gateway sends a done device.
type inbound struct {
	Op        string          `json:"op"`
	Session   string          `json:"session"`
	Heartbeat int             `json:"heartbeat"`
	Max       int             `json:"max"`
	Seq       uint64          `json:"seq"`
	Code      string          `json:"code"`
	Reason    string          `json:"reason"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Args      json.RawMessage `json:"args"`
}

// simulatedDevice is one connection of `wsgate device`. Only its run
// goroutine writes to the connection; a reader goroutine hands it what
// arrives.
type simulatedDevice struct {
	opts    deviceOptions
	conn    *websocket.Conn
	out     io.Writer
	msgs    <-chan []byte      // from the reader
	readErr <-chan error       // why the reader stopped
	max     int                // message limit from the welcome
	seq     uint64             // of the last pub
	pending map[uint64]reading // QoS 1 pubs awaiting their ack
	refused int                // pubs nacked or refused
}

// runDevice connects, says hello and runs the device until ctx ends or
// the connection does; it returns the exit status.
func runDevice(ctx context.Context, opts deviceOptions, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "wsgate device: "+format+"\n", args...)
		return 1
	}
	dctx, cancel := context.WithTimeout(ctx, deviceHelloTimeout)
	defer cancel()
	dialer := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: deviceHelloTimeout, TLSClientConfig: opts.tls}
	conn, resp, err := dialer.DialContext(dctx, opts.url, nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return fail("%s refused the connection: %s %s", opts.url, resp.Status, strings.TrimSpace(string(body)))
		}
		return fail("cannot connect to %s: %v (is the gateway running?)", opts.url, err)
	}
	defer conn.Close()
	if p := conn.Subprotocol(); p != "done" {
		return fail("%s answered with subprotocol %q, not done", opts.url, p)
	}
	// The reader: everything the gateway sends, until the connection ends
	// or quit, which runDevice closes with the connection on its way out.
	msgs := make(chan []byte, 16)
	readErr := make(chan error, 1)
	quit, readerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- msg:
			case <-quit:
				return
			}
		}
	}()
	defer func() {
		close(quit)
		_ = conn.Close()
		<-readerDone
	}()
	d := &simulatedDevice{opts: opts, conn: conn, out: stdout, msgs: msgs, readErr: readErr, pending: map[uint64]reading{}}

	hello := map[string]any{"op": "hello", "id": opts.id, "model": "wsgate device", "fw": versionString()}
	if opts.token != "" {
		hello["token"] = opts.token
	}
	if err := d.write(hello); err != nil {
		return fail("hello: %v", err)
	}
	select {
	case msg := <-msgs:
		var w inbound
		if json.Unmarshal(msg, &w) != nil || w.Op != "welcome" {
			return fail("the gateway answered the hello with %s", msg)
		}
		d.max = w.Max
		fmt.Fprintf(stdout, "connected to %s as %s (done, session %s); Ctrl-C to stop\n", opts.url, opts.id, w.Session)
	case err := <-readErr:
		return fail("hello refused: %s", closeText(err))
	case <-dctx.Done():
		return fail("no welcome within %s", deviceHelloTimeout)
	}
	return d.run(ctx, stdin, stderr)
}

// run publishes the readings and serves what arrives until ctx ends (a
// bye and a normal close: status 0), the connection ends (1) or, with
// -once, every reading is settled (0, or 1 when one was refused).
func (d *simulatedDevice) run(ctx context.Context, stdin io.Reader, stderr io.Writer) int {
	for _, r := range d.opts.readings {
		if err := d.publish(r); err != nil {
			fmt.Fprintln(stderr, "wsgate device:", err)
			return 1
		}
	}
	var lines <-chan string
	if d.opts.stdin {
		done := make(chan struct{})
		defer close(done)
		lines = readLines(stdin, done)
	}
	var tick <-chan time.Time
	if d.opts.every > 0 {
		t := time.NewTicker(d.opts.every)
		defer t.Stop()
		tick = t.C
	}
	for {
		if d.opts.once && len(d.pending) == 0 && lines == nil {
			return d.close(0)
		}
		select {
		case <-ctx.Done():
			return d.close(0)
		case err := <-d.readErr:
			fmt.Fprintf(stderr, "wsgate device: connection lost: %s\n", closeText(err))
			return 1
		case msg := <-d.msgs:
			if err := d.receive(msg, stderr); err != nil {
				fmt.Fprintln(stderr, "wsgate device:", err)
				return 1
			}
		case <-tick:
			for _, r := range d.opts.readings {
				if err := d.publish(r); err != nil {
					fmt.Fprintln(stderr, "wsgate device:", err)
					return 1
				}
			}
		case line, ok := <-lines:
			if !ok {
				lines = nil // standard input ended; commands still arrive
				continue
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			r, err := parseReading(strings.TrimSpace(line))
			if err != nil {
				fmt.Fprintln(stderr, "wsgate device: standard input:", err)
				continue
			}
			if err := d.publish(r); err != nil {
				fmt.Fprintln(stderr, "wsgate device:", err)
				return 1
			}
		}
	}
}

// readLines hands the lines of r to the channel it returns, which is
// closed at the end of r, until done. A read from a terminal cannot be
// interrupted: that goroutine ends with the process.
func readLines(r io.Reader, done <-chan struct{}) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(r)
		for s.Scan() {
			select {
			case lines <- s.Text():
			case <-done:
				return
			}
		}
	}()
	return lines
}

// publish sends one reading; a QoS 1 one waits for its ack in pending.
func (d *simulatedDevice) publish(r reading) error {
	d.seq++
	pub := map[string]any{"op": "pub", "ch": r.channel, "data": r.data, "seq": d.seq}
	if d.opts.qos == 0 {
		pub["qos"] = 0
	}
	if err := d.write(pub); err != nil {
		return fmt.Errorf("publish %s: %w", r.channel, err)
	}
	if d.opts.qos == 0 {
		fmt.Fprintf(d.out, "sent %s %s\n", r.channel, r.data)
		return nil
	}
	d.pending[d.seq] = r
	return nil
}

// receive handles one message from the gateway.
func (d *simulatedDevice) receive(msg []byte, stderr io.Writer) error {
	var m inbound
	if err := json.Unmarshal(msg, &m); err != nil {
		return fmt.Errorf("the gateway sent %s: %w", msg, err)
	}
	switch m.Op {
	case "ack":
		if r, ok := d.pending[m.Seq]; ok {
			delete(d.pending, m.Seq)
			fmt.Fprintf(d.out, "published %s %s\n", r.channel, r.data)
		}
	case "nack":
		if r, ok := d.pending[m.Seq]; ok {
			delete(d.pending, m.Seq)
			d.refused++
			fmt.Fprintf(d.out, "refused %s %s: %s (%s)\n", r.channel, r.data, m.Code, m.Reason)
		}
	case "cmd":
		return d.command(m)
	case "error":
		d.refused++
		fmt.Fprintf(stderr, "wsgate device: the gateway says %s: %s\n", m.Code, m.Reason)
	}
	return nil
}

// command prints a command and answers it as -answer says.
func (d *simulatedDevice) command(m inbound) error {
	args := string(m.Args)
	if args == "" {
		args = "(no arguments)"
	}
	res := map[string]any{"op": "res", "id": m.ID}
	switch d.opts.answer {
	case "none":
		fmt.Fprintf(d.out, "command %s %s (id %s): not answered\n", m.Name, args, m.ID)
		return nil
	case "error":
		res["ok"], res["error"] = false, "refused by wsgate device -answer error"
		fmt.Fprintf(d.out, "command %s %s (id %s): answered with an error\n", m.Name, args, m.ID)
	default:
		res["ok"] = true
		if len(m.Args) > 0 {
			res["data"] = m.Args
		}
		fmt.Fprintf(d.out, "command %s %s (id %s): answered ok\n", m.Name, args, m.ID)
	}
	return d.write(res)
}

// write sends one JSON message, within the limit the welcome gave.
func (d *simulatedDevice) write(v any) error {
	msg, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if d.max > 0 && len(msg) > d.max {
		return fmt.Errorf("a message of %d bytes is over the gateway's limit of %d", len(msg), d.max)
	}
	_ = d.conn.SetWriteDeadline(time.Now().Add(deviceWriteTimeout))
	return d.conn.WriteMessage(websocket.TextMessage, msg)
}

// close says bye, closes normally and waits a little for the gateway's
// close; it returns status, or 1 when -once saw a reading refused.
func (d *simulatedDevice) close(status int) int {
	for seq, r := range d.pending {
		fmt.Fprintf(d.out, "not acknowledged: %s %s (seq %d)\n", r.channel, r.data, seq)
	}
	if d.opts.once && d.refused > 0 {
		status = 1
	}
	_ = d.write(map[string]any{"op": "bye"})
	deadline := time.Now().Add(deviceCloseTimeout)
	_ = d.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline)
	_ = d.conn.SetReadDeadline(deadline) // the reader ends with the gateway's close, or then
	for done := false; !done; {
		select {
		case <-d.msgs: // what was on its way; the reader must not wait for us
		case <-d.readErr:
			done = true
		}
	}
	fmt.Fprintln(d.out, "disconnected")
	return status
}

// closeText says why a connection ended.
func closeText(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Text != "" {
			return fmt.Sprintf("closed by the gateway with %d (%s)", ce.Code, ce.Text)
		}
		return fmt.Sprintf("closed by the gateway with %d", ce.Code)
	}
	return err.Error()
}
