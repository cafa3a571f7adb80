// Centrifugo's bidirectional client protocol (v2, JSON encoding), the part
// the driver speaks, written from centrifugal/protocol v0.19.2's
// client.proto as Centrifugo v6.9.1 serves it on /connection/websocket:
// a client frame holds one or more commands, a server frame one or more
// replies, newline-separated; a reply with an id answers the command of
// that id, one without carries a push; an empty object both ways is the
// application-level ping and its pong. Publication data travels as raw
// JSON, not base64.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

type command struct {
	ID        uint32            `json:"id"`
	Connect   *connectRequest   `json:"connect,omitempty"`
	Subscribe *subscribeRequest `json:"subscribe,omitempty"`
	Publish   *publishRequest   `json:"publish,omitempty"`
}

type connectRequest struct {
	Token string `json:"token"`
	Name  string `json:"name,omitempty"`
}

type subscribeRequest struct {
	Channel string `json:"channel"`
}

type publishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

type reply struct {
	ID      uint32          `json:"id"`
	Error   *protocolError  `json:"error"`
	Push    *push           `json:"push"`
	Connect *connectResult  `json:"connect"`
	Publish json.RawMessage `json:"publish"`
}

type connectResult struct {
	Client string `json:"client"`
	Pong   bool   `json:"pong"` // the server wants a pong for each ping
}

type push struct {
	Channel    string       `json:"channel"`
	Pub        *publication `json:"pub"`
	Disconnect *struct {
		Code   uint32 `json:"code"`
		Reason string `json:"reason"`
	} `json:"disconnect"`
}

type publication struct {
	Data   message `json:"data"`
	Offset uint64  `json:"offset"`
}

// message is what a publisher publishes: the fields a chat message needs
// of ChatPacket's send frame, its client_id and body, where the body
// carries the send time as bench/load's does ("t=UNIX_NANOS") and the
// client_id the publisher's count ("m-N"), which orders a channel.
type message struct {
	ClientID string `json:"client_id"`
	Body     string `json:"body"`
}

type protocolError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

func (e *protocolError) Error() string {
	return fmt.Sprintf("centrifugo error %d: %s", e.Code, e.Message)
}

var _ error = (*protocolError)(nil)

// isPing reports whether a line of a server frame is the empty reply that
// is a ping.
func isPing(line []byte) bool { return bytes.Equal(bytes.TrimSpace(line), []byte("{}")) }

// encodeCommands writes commands as one frame, a line each.
func encodeCommands(cmds ...command) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b) // ends each command with a newline
	for _, c := range cmds {
		enc.Encode(c) // plain structs of strings: cannot fail
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// connectionToken makes the HS256 JWT that Centrifugo's
// client.token.hmac_secret_key verifies: the user is the sub claim, and
// no exp, so the connection never expires during a run.
func connectionToken(secret, user string) string {
	enc := base64.RawURLEncoding
	claims, _ := json.Marshal(map[string]string{"sub": user}) // cannot fail
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}
