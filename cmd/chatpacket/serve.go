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

	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport"
	"github.com/chatpacket/chatpacket/transport/mail"
	"github.com/spf13/cobra"
)

// shutdownGrace bounds a graceful stop: after SIGTERM the node closes its
// listeners, lets requests in flight finish and closes the store within it.
const shutdownGrace = 10 * time.Second

type serveConfig struct {
	dataDir       string
	httpAddr      string
	gossipAddr    string
	remoteAddr    string
	raftAddr      string
	join          []string
	gossipPreset  string
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

Nodes form a cluster by gossip: start the first one alone, and every other
one with --join naming any live node's gossip address. Data is split into
shards, each replicated by raft on up to 3 nodes: an acknowledged message is
on disk on a majority of its shard's replicas. Gossip (TCP and UDP), the
grain remote and raft listen on loopback by default; give addresses other
machines can reach to run a cluster across machines.

The node answers GET /healthz while it runs and GET /readyz with 200 once its
store is open and it has joined its cluster. SIGTERM or SIGINT stops it
gracefully within 10 s: it stops taking requests, stops its grains, leaves
the cluster and closes the store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.dataDir, "data-dir", "./chatpacket-data", "directory for the node's data")
	f.StringVar(&cfg.httpAddr, "http", ":8080", "address of the HTTP API, widget and dashboard")
	f.StringVar(&cfg.gossipAddr, "gossip", "127.0.0.1:7946", "address of cluster gossip, TCP and UDP (port 0: any free port)")
	f.StringVar(&cfg.remoteAddr, "remote", "127.0.0.1:8090", "address of the grain remote that carries calls between nodes (port 0: any free port)")
	f.StringVar(&cfg.raftAddr, "raft", "127.0.0.1:8300", "address of the raft listener that replicates every shard between nodes (port 0: any free port)")
	f.StringSliceVar(&cfg.join, "join", nil, "gossip addresses of live nodes to join, comma-separated (none: form a new cluster)")
	f.StringVar(&cfg.gossipPreset, "gossip-preset", "lan", "failure detection: lan (nodes on a network) or local (nodes on one machine: faster)")
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
	machine, err := shard.New(db)
	if err != nil {
		db.Close()
		return err
	}

	srv := transport.NewServer(cfg.httpAddr, log)
	ln, err := srv.Listen()
	if err != nil {
		machine.Close()
		db.Close()
		return err
	}
	log.Info("serving", "http", ln.Addr().String())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// /healthz answers from here on; /readyz once the node is a member.
	var ref cluster.NodeRef
	var f *front
	node, err := startNode(ctx, cfg, log, db, machine, &ref)
	for err == nil {
		ref.Set(node)
		if f, err = startFront(cfg, log, srv, node, machine); err != nil {
			break
		}
		log.Info("cluster member", "gossip", node.GossipAddr(), "members", node.Members(), "member_id", node.System.ID)
		srv.SetReady(true)
		select {
		case err = <-served:
			served <- err
		case <-ctx.Done():
		case <-node.Blocked():
			// Declared dead while paused or cut off, and back: protoactor
			// will not take this member id again. Rejoin under a new one;
			// sockets close with 1001 and their clients resume.
			srv.SetReady(false)
			srv.Unmount()
			err = f.close()
			f = nil
			if err == nil {
				node, err = node.Rejoin(ctx) // nil on error: Rejoin stopped the old one
			}
			continue
		}
		break
	}

	log.Info("shutting down", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(sctx), <-served)
	if f != nil {
		err = errors.Join(err, f.close())
	}
	if node != nil {
		node.Stop(true)
	}
	machine.Close()
	err = errors.Join(err, db.Close())
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// front is what serves the API over one member of the cluster: the
// operator's socket, the gateway and the API's handlers. A node that
// rejoins the cluster under a new member id builds a new one.
type front struct {
	adm *admin.Server
	gw  *gateway.Gateway
	api *transport.API
}

func startFront(cfg serveConfig, log *slog.Logger, srv *transport.Server, node *cluster.Node, machine *shard.Machine) (*front, error) {
	adm, err := admin.Start(admin.Config{DataDir: cfg.dataDir, Node: node, Logger: log})
	if err != nil {
		return nil, err
	}
	f := &front{adm: adm, gw: gateway.New(node.Cluster, log)}
	f.api = &transport.API{Cluster: node.Cluster, Machine: machine, Gateway: f.gw, Log: log, Now: time.Now,
		Mail: &mail.Outbox{Dir: filepath.Join(cfg.dataDir, "outbox"), From: "ChatPacket <noreply@localhost>"}}
	f.api.Register(srv)
	return f, nil
}

// close closes the sockets (clients reconnect and resume), the gateway and
// the operator's socket.
func (f *front) close() error {
	f.api.CloseSockets()
	f.gw.Close()
	return f.adm.Close()
}

// startNode joins or forms the cluster with this node's grains; ref refers
// to the node the grains run on (Rejoin replaces it).
func startNode(ctx context.Context, cfg serveConfig, log *slog.Logger, db *storage.DB, machine *shard.Machine, ref *cluster.NodeRef) (*cluster.Node, error) {
	var ccfg cluster.Config
	switch cfg.gossipPreset {
	case "lan":
		ccfg = cluster.LANConfig()
	case "local":
		ccfg = cluster.LocalConfig()
	default:
		return nil, fmt.Errorf("--gossip-preset %q: want lan or local", cfg.gossipPreset)
	}
	ccfg.GossipAddr, ccfg.RemoteAddr, ccfg.RaftAddr, ccfg.Join, ccfg.Logger = cfg.gossipAddr, cfg.remoteAddr, cfg.raftAddr, cfg.join, log
	if len(cfg.join) > 0 {
		log.Info("joining the cluster", "seeds", cfg.join)
	}
	return cluster.StartShards(ctx, ccfg, db, machine,
		cluster.WithKinds(grains.Kinds()...),
		cluster.WithExtensions(&grains.Deps{Machine: machine, Now: time.Now, Log: log, CallTimeout: 5 * time.Second, Peers: ref.PeerAddrs}))
}
