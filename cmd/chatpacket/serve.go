package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	netmail "net/mail"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/retention"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/chatpacket/chatpacket/cluster/backup"
	"github.com/chatpacket/chatpacket/cluster/clock"
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

	smtpHost     string
	smtpPort     int
	smtpUser     string
	smtpPassword string
	smtpStartTLS string
	mailFrom     string
	publicURL    string
	widgetLimits bool

	tlsCert       string
	tlsKey        string
	tlsSelfSigned bool

	pprofAddr string
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

Mail (account verification, password resets, security alerts, invitations)
goes to the SMTP server of --smtp-host, with STARTTLS required by default and
AUTH PLAIN when --smtp-user is given; give the password in
CHATPACKET_SMTP_PASSWORD rather than on the command line, where other users
of the machine can see it. Without --smtp-host every email is written to
DATA_DIR/outbox instead: read it with 'chatpacket admin outbox'.

--tls-cert and --tls-key serve HTTPS and WSS on --http, with
Strict-Transport-Security and __Host- session cookies. --tls-self-signed
generates a certificate for localhost and 127.0.0.1 into DATA_DIR/tls on first
start and reuses it after, without Strict-Transport-Security: for development
and tests, as browsers warn about it until you trust it. See
docs/operations.md.

Retention runs by itself on every node, on the wall clock: each node runs
the due jobs of the shards it leads every 10 minutes, once per period across
the cluster (analytics older than 12 months are shredded daily; tenants are
erased within the hour after their 30-day grace period). See
docs/operations.md.

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
	f.StringVar(&cfg.smtpHost, "smtp-host", "", "SMTP server that sends the service's emails (none: write them to DATA_DIR/outbox)")
	f.IntVar(&cfg.smtpPort, "smtp-port", 587, "port of the SMTP server")
	f.StringVar(&cfg.smtpUser, "smtp-user", "", "log in to the SMTP server with AUTH PLAIN as this user (none: no login)")
	f.StringVar(&cfg.smtpPassword, "smtp-password", "", "password of --smtp-user; prefer CHATPACKET_SMTP_PASSWORD, as a command line is visible to other users")
	f.StringVar(&cfg.smtpStartTLS, "smtp-starttls", mail.StartTLSRequired, "STARTTLS to the SMTP server: required, opportunistic (when offered) or off")
	f.StringVar(&cfg.mailFrom, "mail-from", defaultMailFrom(), "sender of the service's emails")
	f.BoolVar(&cfg.widgetLimits, "widget-message-limits", true, "limit how fast each visitor (10 per 10 s) and each tenant (200/s) send messages; false only for load tests")
	f.StringVar(&cfg.publicURL, "public-url", "", "origin the links in emails point to, as https://chat.example.com (default: the origin each request was addressed to; set it in production)")
	f.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS and WSS on --http (with --tls-key)")
	f.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	f.BoolVar(&cfg.tlsSelfSigned, "tls-self-signed", false, "serve HTTPS with a self-signed certificate for localhost, generated into DATA_DIR/tls (development)")
	f.StringVar(&cfg.pprofAddr, "pprof", "", "serve Go's profiles (net/http/pprof) on this address, as 127.0.0.1:6060, for measuring (default: off)")
	return cmd
}

func serve(ctx context.Context, cfg serveConfig) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.pprofAddr != "" {
		if err := servePprof(ctx, cfg.pprofAddr, log); err != nil {
			return err
		}
	}
	sender := mailSender(cfg, log)
	tlsCfg, err := serverTLS(cfg, log, time.Now())
	if err != nil {
		return err
	}

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
	scheme := "http"
	if tlsCfg != nil {
		srv.UseTLS(tlsCfg, !cfg.tlsSelfSigned)
		scheme = "https"
	}
	ln, err := srv.Listen()
	if err != nil {
		machine.Close()
		db.Close()
		return err
	}
	log.Info("serving", "http", ln.Addr().String(), "scheme", scheme)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// /healthz answers from here on; /readyz once the node is a member.
	var ref cluster.NodeRef
	var f *front
	node, err := startNode(ctx, cfg, log, db, machine, &ref)
	for err == nil {
		ref.Set(node)
		if f, err = startFront(cfg, log, srv, node, machine, sender, tlsCfg != nil,
			&backup.Source{DB: db, Machine: machine, MasterKey: mk.Key}); err != nil {
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
	adm       *admin.Server
	gw        *gateway.Gateway
	api       *transport.API
	retention *retention.Scheduler
}

func startFront(cfg serveConfig, log *slog.Logger, srv *transport.Server, node *cluster.Node, machine *shard.Machine, sender mail.Sender, overTLS bool, backups *backup.Source) (*front, error) {
	// Retention runs on whichever node leads each shard, on the wall
	// clock; every node prunes its own backups of DATA_DIR/backups.
	backupDir := filepath.Join(cfg.dataDir, "backups")
	sched, err := retention.New(retention.Config{
		Machine: machine, Leads: node.Shards().Groups.IsLeader, Clock: clock.Real, Log: log,
		PruneBackups: func(_ context.Context, now time.Time, maxAge time.Duration) (int, error) {
			removed, err := backup.Prune(backupDir, now, maxAge)
			return len(removed), err
		},
	})
	if err != nil {
		return nil, err
	}
	gw := gateway.New(node.Cluster, log)
	api := &transport.API{Cluster: node.Cluster, Machine: machine, Gateway: gw, Log: log, Now: time.Now,
		Mail: sender, TLS: overTLS, PublicOrigin: strings.TrimSuffix(cfg.publicURL, "/"),
		MessageLimits: transport.MessageLimits{Off: !cfg.widgetLimits}}
	adm, err := admin.Start(admin.Config{DataDir: cfg.dataDir, Node: node, Logger: log, Backups: backups, Policy: api, Privacy: api})
	if err != nil {
		gw.Close()
		return nil, err
	}
	f := &front{adm: adm, gw: gw, api: api, retention: sched}
	f.api.Register(srv)
	f.retention.Start()
	return f, nil
}

// close stops the retention jobs, closes the sockets (clients reconnect
// and resume), the gateway and the operator's socket.
func (f *front) close() error {
	f.retention.Close()
	f.api.CloseSockets()
	f.api.WaitMail() // emails already accepted go out before the node stops
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

// check refuses flags that cannot work together, before the node touches
// its data dir.
func (cfg serveConfig) check() error {
	if cfg.smtpHost == "" && (cfg.smtpUser != "" || cfg.smtpPassword != "") {
		return errors.New("--smtp-user and --smtp-password need --smtp-host")
	}
	if cfg.smtpHost != "" {
		if strings.ContainsAny(cfg.smtpHost, ":/ ") && net.ParseIP(cfg.smtpHost) == nil {
			return fmt.Errorf("--smtp-host %q: give the host name alone, and the port with --smtp-port", cfg.smtpHost)
		}
		if cfg.smtpPort < 1 || cfg.smtpPort > 65535 {
			return fmt.Errorf("--smtp-port %d: want 1-65535 (587 for submission with STARTTLS)", cfg.smtpPort)
		}
		if cfg.smtpUser != "" && cfg.smtpPassword == "" {
			return errors.New("--smtp-user needs a password: set CHATPACKET_SMTP_PASSWORD (or --smtp-password)")
		}
		if cfg.smtpUser == "" && cfg.smtpPassword != "" {
			return errors.New("--smtp-password needs --smtp-user")
		}
	}
	switch cfg.smtpStartTLS {
	case mail.StartTLSRequired, mail.StartTLSOpportunistic, mail.StartTLSOff:
	default:
		return fmt.Errorf("--smtp-starttls %q: want required, opportunistic or off", cfg.smtpStartTLS)
	}
	if _, err := netmail.ParseAddress(cfg.mailFrom); err != nil || strings.ContainsAny(cfg.mailFrom, "\r\n") {
		return fmt.Errorf("--mail-from %q: want an address, with or without a name (ChatPacket <noreply@example.com>)", cfg.mailFrom)
	}
	if cfg.publicURL != "" && !shard.ValidOrigin(strings.TrimSuffix(cfg.publicURL, "/")) {
		return fmt.Errorf("--public-url %q: want an origin, scheme://host[:port], as https://chat.example.com", cfg.publicURL)
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both")
	}
	if cfg.tlsSelfSigned && cfg.tlsCert != "" {
		return errors.New("--tls-self-signed generates its own certificate: give it or --tls-cert and --tls-key, not both")
	}
	return nil
}

// defaultMailFrom is "ChatPacket <noreply@HOSTNAME>".
func defaultMailFrom() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "ChatPacket <noreply@" + host + ">"
}

// mailSender is the node's mail: the SMTP server of the flags, or the
// outbox in the data dir. It says once in the log which.
func mailSender(cfg serveConfig, log *slog.Logger) mail.Sender {
	if cfg.smtpHost == "" {
		dir := filepath.Join(cfg.dataDir, "outbox")
		log.Info("no --smtp-host: mail goes to the outbox in the data dir; read it with 'chatpacket admin outbox'", "dir", dir)
		return &mail.Outbox{Dir: dir, From: cfg.mailFrom}
	}
	s := &mail.SMTP{Host: cfg.smtpHost, Port: cfg.smtpPort, Username: cfg.smtpUser, Password: cfg.smtpPassword,
		StartTLS: cfg.smtpStartTLS, From: cfg.mailFrom}
	if cfg.smtpPassword != "" && os.Getenv("CHATPACKET_SMTP_PASSWORD") == "" {
		log.Warn("the SMTP password is on the command line, where other users of this machine can read it: give it in CHATPACKET_SMTP_PASSWORD")
	}
	log.Info("mail goes through SMTP", "server", s.Addr(), "starttls", s.StartTLS, "auth", s.Username != "", "from", cfg.mailFrom)
	return s
}

// selfSignedValidity is how long a generated certificate lasts; it is
// replaced at start when less than selfSignedRenew of it remains.
const (
	selfSignedValidity = 365 * 24 * time.Hour
	selfSignedRenew    = 30 * 24 * time.Hour
)

// serverTLS is the HTTPS configuration of the flags, nil for plain HTTP.
func serverTLS(cfg serveConfig, log *slog.Logger, now time.Time) (*tls.Config, error) {
	certFile, keyFile := cfg.tlsCert, cfg.tlsKey
	generated := false
	switch {
	case cfg.tlsSelfSigned:
		var err error
		if certFile, keyFile, generated, err = selfSignedPair(filepath.Join(cfg.dataDir, "tls"), now); err != nil {
			return nil, err
		}
	case certFile == "":
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		return nil, fmt.Errorf("tls: %s holds no certificate", certFile)
	}
	attrs := []any{"cert", certFile, "sha256", fingerprint(leaf.Raw), "names", certNames(leaf), "expires", leaf.NotAfter.UTC().Format(time.DateOnly)}
	switch {
	case cfg.tlsSelfSigned:
		log.Info("serving HTTPS with a self-signed certificate: browsers warn until you trust it; for development", append(attrs, "generated", generated)...)
	case now.After(leaf.NotAfter):
		log.Warn("the TLS certificate has EXPIRED: clients will refuse it", attrs...)
	default:
		log.Info("serving HTTPS", attrs...)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

// selfSignedPair returns dir's certificate and key, generating them when
// they are missing or expire within selfSignedRenew. The key is readable
// by the node's user only.
func selfSignedPair(dir string, now time.Time) (certFile, keyFile string, generated bool, err error) {
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	if certErr == nil && keyErr == nil {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return "", "", false, fmt.Errorf("tls: self-signed pair in %s: %w (delete the directory to generate a new one)", dir, err)
		}
		if now.Add(selfSignedRenew).Before(pair.Leaf.NotAfter) {
			return certFile, keyFile, false, nil
		}
	} else if !errors.Is(certErr, os.ErrNotExist) || !errors.Is(keyErr, os.ErrNotExist) {
		return "", "", false, fmt.Errorf("tls: self-signed pair in %s: want both cert.pem and key.pem, or neither (%w)", dir, errors.Join(certErr, keyErr))
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", false, fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return "", "", false, fmt.Errorf("tls: generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"ChatPacket self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", false, fmt.Errorf("tls: generate certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", false, fmt.Errorf("tls: encode key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", false, fmt.Errorf("tls: %w", err)
	}
	// The key first: a certificate without its key would not load.
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", false, err
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", false, err
	}
	return certFile, keyFile, true, nil
}

// writeFileAtomic writes name through a temporary file: a crash leaves the
// old file or the new one, never half of one.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Chmod(perm), tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("tls: write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("tls: write %s: %w", name, err)
	}
	return nil
}

// fingerprint is the SHA-256 of a certificate as browsers and
// `openssl x509 -fingerprint -sha256` show it.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

func certNames(c *x509.Certificate) string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return strings.Join(names, ",")
}
