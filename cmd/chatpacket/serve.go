package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport"
	"github.com/spf13/cobra"
)

// shutdownGrace bounds a graceful stop: after SIGTERM the node closes its
// listeners, lets requests in flight finish and closes the store within it.
const shutdownGrace = 10 * time.Second

type serveConfig struct {
	dataDir       string
	httpAddr      string
	masterKeyFile string
	logLevel      slog.Level
}

func newServeCommand() *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a ChatPacket node",
		Long: `Run a ChatPacket node.

With no flags it runs on embedded defaults: HTTP on :8080, data in
./chatpacket-data, and a development master key generated into the data dir
(with a warning: a key stored beside the data does not protect it at rest).
In production give the master key as a file (--master-key-file) or as
CHATPACKET_MASTER_KEY (64 hex digits or base64 of 32 bytes; make one with
'chatpacket admin key generate').

The node answers GET /healthz while it runs and GET /readyz with 200 once its
store is open. SIGTERM or SIGINT stops it gracefully within 10 s.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.dataDir, "data-dir", "./chatpacket-data", "directory for the node's data")
	f.StringVar(&cfg.httpAddr, "http", ":8080", "address of the HTTP API, widget and dashboard")
	f.StringVar(&cfg.masterKeyFile, "master-key-file", "", "file holding the master key (default: CHATPACKET_MASTER_KEY, else a development key in the data dir)")
	f.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "least severe log level shown: debug, info, warn or error")
	return cmd
}

func serve(ctx context.Context, cfg serveConfig) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	storeDir := filepath.Join(cfg.dataDir, "store")
	mk, err := storage.LoadMasterKey(storage.MasterKeySource{
		File:    cfg.masterKeyFile,
		Env:     os.Getenv("CHATPACKET_MASTER_KEY"),
		DevFile: filepath.Join(cfg.dataDir, "master.key"),
	}, storeDir)
	if err != nil {
		return err
	}
	if mk.Dev {
		log.Warn("USING A DEVELOPMENT MASTER KEY stored beside the data: anyone who can read the data dir can read everything in it. "+
			"Give --master-key-file or CHATPACKET_MASTER_KEY in production.",
			"key_file", filepath.Join(cfg.dataDir, "master.key"), "generated", mk.Generated)
	}

	db, err := storage.Open(ctx, storage.Options{Dir: storeDir, MasterKey: mk.Key, Logger: log})
	if err != nil {
		return err
	}
	log.Info("store open", "dir", storeDir, "shards", db.Shards(), "master_key", mk.Fingerprint(), "master_key_from", mk.Origin)

	srv := transport.NewServer(cfg.httpAddr, log)
	ln, err := srv.Listen()
	if err != nil {
		db.Close()
		return err
	}
	log.Info("serving", "http", ln.Addr().String())
	srv.SetReady(true)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("shutting down", "grace", shutdownGrace)
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err = srv.Shutdown(sctx)
		if serr := <-served; err == nil {
			err = serr
		}
	}
	if cerr := db.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
