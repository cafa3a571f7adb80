// Command compare is the side-by-side benchmark of issue 8: ChatPacket
// against Centrifugo v6 on the same fan-out load, on the same machine.
// run.sh drives it; it holds what the shell should not:
//
//	compare centrifugo --config FILE ...  load a running Centrifugo (the driver)
//	compare report ...                    the table, the ratio and the JSON of a run
//	compare config --out FILE ...         write the Centrifugo config of a run
//
// It is a module of its own, so that ChatPacket's module never depends on
// anything of the comparison. Everything it opens is on the address it is
// given (run.sh: 127.0.0.1); only main exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

const usage = `compare: ChatPacket side by side with Centrifugo (see run.sh, which drives it).

  compare centrifugo --config FILE [--visitors N --agents M --rate R --duration D] [--json OUT]
      Load the Centrifugo that FILE configures with ChatPacket's fan-out shape.
  compare report --chatpacket FILE --centrifugo FILE [flags] [--out OUT]
      Print both runs side by side and the ratio; write the JSON of both.
  compare config --out FILE [--visitors N --history-size H --port P]
      Write the Centrifugo v6 config of a run (a free port on 127.0.0.1,
      a fresh token secret).

Run "compare CMD --help" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "centrifugo":
		return centrifugoCommand(ctx, args[1:], stdout, stderr)
	case "report":
		return reportCommand(args[1:], stdout, stderr)
	case "config":
		return configCommand(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		_, err := fmt.Fprint(stdout, usage)
		return err
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// shapeFlags are the load shape's flags, with `chatpacket bench`'s names
// and run.sh's defaults.
func shapeFlags(f *flag.FlagSet, s *shape, d *time.Duration) {
	f.IntVar(&s.Visitors, "visitors", 200, "publisher connections (visitors), a channel (conversation) each")
	f.IntVar(&s.Agents, "agents", 4, "subscriber connections (agents), each subscribed to every visitor's channel")
	f.IntVar(&s.Rate, "rate", 2000, "messages per second, in total over the visitors")
	f.DurationVar(d, "duration", 10*time.Second, "how long to send")
}

func centrifugoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := flag.NewFlagSet("compare centrifugo", flag.ContinueOnError)
	f.SetOutput(stderr)
	var s shape
	var cfg loadConfig
	configFile := f.String("config", "", "the Centrifugo config file (JSON) of the server to load: its address and token secret come from it")
	jsonOut := f.String("json", "", "write the result as JSON to this file too")
	shapeFlags(f, &s, &cfg.Duration)
	f.Usage = func() {
		fmt.Fprint(stderr, `Usage: compare centrifugo --config FILE [flags]

Loads a running Centrifugo v6 with ChatPacket's fan-out shape over its
bidirectional WebSocket protocol (JSON): each visitor connection publishes
to its own channel conv:I (and subscribes to it), each agent connection
subscribes to all of them; visitors publish --rate messages/s in total for
--duration. Prints progress on stderr each second and the summary line of
"chatpacket bench" on stdout. Fails if Centrifugo refuses any connect,
subscribe or publish, or drops a connection.

`)
		f.PrintDefaults()
	}
	if err := f.Parse(args); err != nil {
		return err
	}
	if *configFile == "" {
		f.Usage()
		return errors.New("centrifugo: --config is required")
	}
	url, secret, err := readCentrifugoConfig(*configFile)
	if err != nil {
		return err
	}
	cfg.URL, cfg.Secret, cfg.Visitors, cfg.Agents, cfg.Rate, cfg.Progress = url, secret, s.Visitors, s.Agents, s.Rate, stderr
	res, runErr := runCentrifugo(ctx, cfg)
	if res.System == "" {
		return runErr // nothing measured: setup failed
	}
	if _, err := fmt.Fprintln(stdout, res); err != nil {
		return err
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ") // plain fields: cannot fail
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *jsonOut, err)
		}
	}
	return runErr
}

// readCentrifugoConfig finds the WebSocket URL and the token secret in a
// Centrifugo v6 JSON config (http_server.address and .port,
// client.token.hmac_secret_key).
func readCentrifugoConfig(path string) (url, secret string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read the centrifugo config: %w", err)
	}
	var c struct {
		HTTPServer struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"http_server"`
		Client struct {
			Token struct {
				HMACSecretKey string `json:"hmac_secret_key"`
			} `json:"token"`
		} `json:"client"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", "", fmt.Errorf("decode the centrifugo config %s: %w", path, err)
	}
	if c.HTTPServer.Address == "" || c.HTTPServer.Port == 0 || c.Client.Token.HMACSecretKey == "" {
		return "", "", fmt.Errorf("centrifugo config %s: needs http_server.address, http_server.port and client.token.hmac_secret_key", path)
	}
	return "ws://" + net.JoinHostPort(c.HTTPServer.Address, strconv.Itoa(c.HTTPServer.Port)) + "/connection/websocket", c.Client.Token.HMACSecretKey, nil
}

func reportCommand(args []string, stdout, stderr io.Writer) error {
	f := flag.NewFlagSet("compare report", flag.ContinueOnError)
	f.SetOutput(stderr)
	var s shape
	var d time.Duration
	shapeFlags(f, &s, &d)
	cpFile := f.String("chatpacket", "", "stdout of `chatpacket bench` (its summary line)")
	cfFile := f.String("centrifugo", "", "the --json result of `compare centrifugo`")
	out := f.String("out", "", "write the comparison as JSON to this file")
	var cpServer, cpDriver, cfServer, cfDriver time.Duration
	f.DurationVar(&cpServer, "chatpacket-server-cpu", 0, "CPU time of the ChatPacket node during its run")
	f.DurationVar(&cpDriver, "chatpacket-driver-cpu", 0, "CPU time of `chatpacket bench`")
	f.DurationVar(&cfServer, "centrifugo-server-cpu", 0, "CPU time of Centrifugo during its run")
	f.DurationVar(&cfDriver, "centrifugo-driver-cpu", 0, "CPU time of `compare centrifugo`")
	meta := map[string]string{}
	f.Func("meta", "KEY=VALUE to record with the run (machine, commit, ...); repeatable", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		meta[k] = val
		return nil
	})
	f.Usage = func() {
		fmt.Fprint(stderr, "Usage: compare report --chatpacket FILE --centrifugo FILE [flags]\n\nPrints both runs side by side and the ratio ChatPacket / Centrifugo of delivered msgs/s.\n\n")
		f.PrintDefaults()
	}
	if err := f.Parse(args); err != nil {
		return err
	}
	if *cpFile == "" || *cfFile == "" {
		f.Usage()
		return errors.New("report: --chatpacket and --centrifugo are required")
	}
	s.Duration = d.String()
	cpOut, err := os.ReadFile(*cpFile)
	if err != nil {
		return fmt.Errorf("read ChatPacket's result: %w", err)
	}
	cp, err := parseSummary("chatpacket", lastLine(string(cpOut)))
	if err != nil {
		return err
	}
	cfOut, err := os.ReadFile(*cfFile)
	if err != nil {
		return fmt.Errorf("read Centrifugo's result: %w", err)
	}
	var cf Result
	if err := json.Unmarshal(cfOut, &cf); err != nil {
		return fmt.Errorf("decode Centrifugo's result %s: %w", *cfFile, err)
	}
	cp.ServerCPU, cp.DriverCPU, cf.ServerCPU, cf.DriverCPU = cpServer, cpDriver, cfServer, cfDriver
	c := newComparison(s, meta, cp, cf)
	if err := c.writeTable(stdout); err != nil {
		return err
	}
	if *out == "" {
		return nil
	}
	file, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	if err := c.writeJSON(file); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

// lastLine is the last non-empty line of s: where `chatpacket bench` puts
// its summary.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func configCommand(args []string, stdout, stderr io.Writer) error {
	f := flag.NewFlagSet("compare config", flag.ContinueOnError)
	f.SetOutput(stderr)
	var o centrifugoOptions
	out := f.String("out", "", "the config file to write")
	f.IntVar(&o.Visitors, "visitors", 200, "visitor channels of the run: an agent subscribes to all of them")
	f.IntVar(&o.HistorySize, "history-size", 1000, "publications each channel keeps in memory (0: history off)")
	f.IntVar(&o.Port, "port", 0, "port on 127.0.0.1 (0: a free one)")
	f.Usage = func() {
		fmt.Fprint(stderr, "Usage: compare config --out FILE [flags]\n\nWrites the Centrifugo v6 config of a run and prints its port.\n\n")
		f.PrintDefaults()
	}
	if err := f.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		f.Usage()
		return errors.New("config: --out is required")
	}
	if o.Visitors < 1 || o.HistorySize < 0 {
		return errors.New("config: --visitors must be positive and --history-size at least 0")
	}
	if o.Port == 0 {
		// A port free now; Centrifugo binds it a moment later, and run.sh
		// fails loudly in the rare case that someone took it meanwhile.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("config: find a free port: %w", err)
		}
		o.Port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	if err := writeCentrifugoConfig(*out, o); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, o.Port)
	return err
}
