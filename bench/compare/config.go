// The Centrifugo v6 configuration of the comparison, every key checked
// against v6.9.1's internal/configtypes (v6 renamed most v5 keys) and, at
// each run, by `centrifugo checkconfig --strict`, which fails on a key it
// does not know.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

// centrifugoOptions are the choices of a run.
type centrifugoOptions struct {
	Port     int // on 127.0.0.1: v6 takes no port 0 (it means the default, 8000)
	Visitors int // each agent subscribes to this many channels
	// HistorySize is how many publications each channel keeps, in memory;
	// 0 turns history off.
	HistorySize int
}

// centrifugoConfig is the config file, as JSON. The choices and why:
//
//   - Authentication by connection JWT (client.token.hmac_secret_key, a
//     random secret per run), not client.insecure: every connection is an
//     authenticated user, as ChatPacket's visitor and agent tokens make
//     them, and the namespace's allow_*_for_client apply to authenticated
//     users only.
//   - One namespace, conv, that lets clients subscribe and publish
//     (allow_subscribe_for_client, allow_publish_for_client): the chat
//     shape needs client-side publishing, which bypasses any backend.
//   - History in memory by default (history_size, history_ttl 300 s, the
//     memory engine): Centrifugo's nearest thing to ChatPacket's stored,
//     numbered messages that a reconnecting client resumes. It is lost on
//     restart, and the publish is acknowledged without any disk write;
//     ChatPacket acknowledges after a synced write on a majority of
//     replicas (one node here: its own disk).
//   - client.channel_limit raised from 128 to fit an agent's subscriptions
//     to every visitor's channel; everything else at v6's defaults
//     (1 MiB outbound queue per connection, sequential commands per
//     connection, no compression).
//   - Listening on 127.0.0.1 only; /health on for readiness; usage stats
//     off (no reports home from a benchmark); logs at warn.
func centrifugoConfig(o centrifugoOptions, secret string) map[string]any {
	ns := map[string]any{
		"name":                       "conv",
		"allow_subscribe_for_client": true,
		"allow_publish_for_client":   true,
	}
	if o.HistorySize > 0 {
		ns["history_size"] = o.HistorySize
		ns["history_ttl"] = "300s"
	}
	return map[string]any{
		"log":         map[string]any{"level": "warn"},
		"http_server": map[string]any{"address": "127.0.0.1", "port": o.Port},
		"usage_stats": map[string]any{"disabled": true},
		"health":      map[string]any{"enabled": true},
		"client": map[string]any{
			"token":         map[string]any{"hmac_secret_key": secret},
			"channel_limit": o.Visitors + 16,
		},
		"channel": map[string]any{"namespaces": []any{ns}},
	}
}

// writeCentrifugoConfig writes the config with a fresh secret, readable by
// its owner only.
func writeCentrifugoConfig(path string, o centrifugoOptions) error {
	key := make([]byte, 32)
	rand.Read(key) // never fails: crypto/rand panics instead
	return writeJSONFile(path, centrifugoConfig(o, hex.EncodeToString(key)))
}

// writeJSONFile writes v, indented, readable by its owner only (a config
// holds a secret).
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
