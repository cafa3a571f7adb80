package load

// The few calls of the public API (API.md) a load needs: a fresh tenant
// with an API token for its agents, widget sessions, and JSON frames over
// WebSockets.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// tenant is the load's own business on the node.
type tenant struct {
	widgetKey string
	token     string // API token of the owner, for the agent sockets
}

// post sends body as JSON and decodes the answer; a status of 300 or more
// is an error that carries the API's error code.
func post(ctx context.Context, hc *http.Client, url string, body any, hdr map[string]string) (map[string]any, []*http.Cookie, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: read the answer: %w", url, err)
	}
	var out map[string]any
	if resp.StatusCode >= 300 {
		json.Unmarshal(raw, &out) // the error's code when the body has one
		return nil, nil, fmt.Errorf("POST %s: %d %v", url, resp.StatusCode, out["error"])
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, nil, fmt.Errorf("POST %s: answer is not JSON: %w", url, err)
	}
	return out, resp.Cookies(), nil
}

// signup makes a fresh tenant on node, logs its owner in and makes an API
// token for the agent sockets.
func signup(ctx context.Context, hc *http.Client, node string) (tenant, error) {
	suffix := make([]byte, 6)
	rand.Read(suffix)
	email := "load-" + hex.EncodeToString(suffix) + "@example.invalid"
	password := "load test password " + hex.EncodeToString(suffix)
	su, _, err := post(ctx, hc, node+"/api/v1/signup", map[string]string{"organization": "Load test", "name": "Load", "email": email, "password": password}, nil)
	if err != nil {
		return tenant{}, fmt.Errorf("load: sign up a tenant: %w", err)
	}
	login, cookies, err := post(ctx, hc, node+"/api/v1/login", map[string]string{"email": email, "password": password}, nil)
	if err != nil {
		return tenant{}, fmt.Errorf("load: log in: %w", err)
	}
	var cookie string
	for _, c := range cookies {
		cookie = c.Name + "=" + c.Value
	}
	csrf, _ := login["csrf_token"].(string)
	tok, _, err := post(ctx, hc, node+"/api/v1/tokens", map[string]string{"name": "load"}, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf})
	if err != nil {
		return tenant{}, fmt.Errorf("load: make an API token: %w", err)
	}
	t := tenant{}
	t.widgetKey, _ = su["widget_key"].(string)
	t.token, _ = tok["token"].(string)
	if t.widgetKey == "" || t.token == "" {
		return tenant{}, fmt.Errorf("load: signup or token answer without widget_key or token")
	}
	return t, nil
}

// widgetSession starts a visitor's session on node and returns its
// visitor token.
func widgetSession(ctx context.Context, hc *http.Client, node, widgetKey string) (string, error) {
	sess, _, err := post(ctx, hc, node+"/api/v1/widget/sessions", map[string]string{"widget_key": widgetKey}, nil)
	if err != nil {
		return "", fmt.Errorf("load: widget session: %w", err)
	}
	tok, _ := sess["visitor_token"].(string)
	if tok == "" {
		return "", fmt.Errorf("load: widget session answer without visitor_token")
	}
	return tok, nil
}

// wsURL is the WebSocket URL of path on node (http → ws, https → wss).
func wsURL(node, path string) string { return "ws" + strings.TrimPrefix(node, "http") + path }

func writeJSON(ctx context.Context, ws *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return ws.Write(wctx, websocket.MessageText, b)
}

// frame is what the generator reads of a server frame (API.md): the
// fields of ack, message and error frames. A struct, not a map: the
// generator shares the cores with the node it measures, and decoding
// every frame into a map was a sixth of its CPU.
type frame struct {
	Type           string `json:"type"`
	ClientID       string `json:"client_id"`
	ConversationID string `json:"conversation_id"`
	Seq            uint64 `json:"seq"`
	Body           string `json:"body"`
	Code           string `json:"code"`
	Message        string `json:"message"`
}

// frameReader reads one socket's frames into one reused buffer.
type frameReader struct {
	ws  *websocket.Conn
	buf bytes.Buffer
}

func (fr *frameReader) read(ctx context.Context) (frame, error) {
	_, rd, err := fr.ws.Reader(ctx)
	if err != nil {
		return frame{}, err
	}
	fr.buf.Reset()
	if _, err := fr.buf.ReadFrom(rd); err != nil {
		return frame{}, err
	}
	var f frame
	return f, json.Unmarshal(fr.buf.Bytes(), &f)
}
