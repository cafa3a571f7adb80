package admin

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := SocketPath(dir)
	ln, err := listen(path)
	if err != nil {
		t.Fatalf("listen(%s) = %v", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v; want a socket with 0600", fi.Mode())
	}
	if _, err := os.Lstat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary name left behind: %v", err)
	}
	accepted := make(chan struct{})
	go func(ln *net.UnixListener) {
		defer close(accepted)
		// Accept the liveness probe of the second listen.
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}(ln)

	if _, err := listen(path); !errors.Is(err, ErrInUse) {
		t.Fatalf("listen on a live socket = %v; want ErrInUse", err)
	}

	// Closed without unlinking: what a killed node leaves.
	ln.Close()
	<-accepted
	ln, err = listen(path)
	if err != nil {
		t.Fatalf("listen over a stale socket = %v; want it replaced", err)
	}
	ln.Close()

	file := filepath.Join(t.TempDir(), SocketName)
	if err := os.WriteFile(file, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listen(file); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("listen over a regular file = %v; want a refusal", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "mine" {
		t.Errorf("the regular file was touched")
	}

	long := "/tmp/" + strings.Repeat("d", 120)
	if _, err := listen(SocketPath(long)); err == nil || !strings.Contains(err.Error(), "shorter --data-dir") {
		t.Errorf("listen on a long path = %v; want advice to shorten it", err)
	}
}

func TestClientWithoutNode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, err := NewClient(dir).Status(ctx)
	if !errors.Is(err, ErrNoNode) || err.Error() != "no node running with data dir "+dir+" (admin socket missing)" {
		t.Errorf("Status() without a socket = %v; want ErrNoNode, admin socket missing", err)
	}

	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := NewClient(dir).Status(ctx); !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), "stale admin socket") {
		t.Errorf("Status() on a stale socket = %v; want ErrNoNode, stale admin socket", err)
	}
	if err := NewClient(dir).Drain(ctx, "n-x", 0, nil); !errors.Is(err, ErrNoNode) {
		t.Errorf("Drain() on a stale socket = %v; want ErrNoNode", err)
	}
}
