// Tests of the driver against a real Centrifugo v6.9.1 on 127.0.0.1. They
// need its binary, which is never in the repo: set CENTRIFUGO to it (run.sh
// KEEP=1 leaves one in its temporary directory), else they skip.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startCentrifugo runs the binary of $CENTRIFUGO with the config cfg
// (adjusted by tweak, if any) and waits for its /health; it returns the
// config file's path.
func startCentrifugo(t *testing.T, o centrifugoOptions, tweak func(map[string]any)) string {
	t.Helper()
	bin := os.Getenv("CENTRIFUGO")
	if bin == "" {
		t.Skip("CENTRIFUGO (a centrifugo v6 binary) not set")
	}
	if testing.Short() {
		t.Skip("starts a server: not in -short")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := writeCentrifugoConfig(path, o); err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		_, secret, err := readCentrifugoConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := centrifugoConfig(o, secret)
		tweak(cfg)
		if err := writeJSONFile(path, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(bin, "checkconfig", "--strict", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("centrifugo checkconfig --strict: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-c", path)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	health := fmt.Sprintf("http://127.0.0.1:%d/health", o.Port)
	for i := 0; ; i++ {
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return path
			}
		}
		if i == 300 {
			t.Fatalf("centrifugo not healthy after 30 s: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	dir := t.TempDir()
	var out strings.Builder
	if err := configCommand([]string{"--out", filepath.Join(dir, "c.json")}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var port int
	if _, err := fmt.Sscan(out.String(), &port); err != nil {
		t.Fatalf("config printed %q: %v", out.String(), err)
	}
	return port
}

func TestCentrifugoDeliversEverything(t *testing.T) {
	o := centrifugoOptions{Port: freePort(t), Visitors: 20, HistorySize: 100}
	path := startCentrifugo(t, o, nil)
	url, secret, err := readCentrifugoConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := runCentrifugo(ctx, loadConfig{URL: url, Secret: secret, Visitors: 20, Agents: 3, Rate: 200, Duration: time.Second})
	if err != nil {
		t.Fatalf("runCentrifugo: %v (%v)", err, res)
	}
	if res.Sent != 200 || res.Acked != 200 || res.Delivered != 600 || res.Errors != 0 || res.Duplicates != 0 || res.Reordered != 0 {
		t.Errorf("run = %v; want 200 sent and acked, 600 delivered, nothing else", res)
	}
	if res.P50 <= 0 || res.P999 < res.P50 {
		t.Errorf("latencies p50 %v p999 %v; want 0 < p50 ≤ p999", res.P50, res.P999)
	}
}

func TestCentrifugoRefusalsFail(t *testing.T) {
	o := centrifugoOptions{Port: freePort(t), Visitors: 2}
	path := startCentrifugo(t, o, func(cfg map[string]any) {
		ns := cfg["channel"].(map[string]any)["namespaces"].([]any)[0].(map[string]any)
		ns["allow_publish_for_client"] = false
	})
	url, secret, err := readCentrifugoConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := loadConfig{URL: url, Secret: secret + "x", Visitors: 2, Agents: 1, Rate: 10, Duration: 200 * time.Millisecond}
	if _, err := runCentrifugo(ctx, cfg); err == nil || !strings.Contains(err.Error(), "connect visitor-0") {
		t.Errorf("runCentrifugo with a wrong secret: %v; want the refused connect", err)
	}
	cfg.Secret = secret
	res, err := runCentrifugo(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "centrifugo refused") || !strings.Contains(err.Error(), "103") {
		t.Errorf("runCentrifugo with publishing not allowed: %v; want the refused publishes (error 103)", err)
	}
	if res.Acked != 0 || res.Errors != res.Sent {
		t.Errorf("run = %v; want every publish an error, none acked", res)
	}
}
