package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nodetest.LeakIgnores...) }

// echoServer serves WebSocket connections that answer each JSON frame with
// {"type":"echo","frame":…}, an invalid one with an error frame, and the
// frame "flood" with n frames of size bytes each. Each connection's end is
// reported on ended.
func echoServer(t *testing.T, n, size int) (url string, ended <-chan error) {
	t.Helper()
	endedc := make(chan error, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := AcceptConn(w, r, nil)
		if err != nil {
			return
		}
		endedc <- c.Serve(r.Context(), func(ctx context.Context, frame []byte) {
			switch {
			case string(frame) == `"flood"`:
				payload := strings.Repeat("x", size)
				for range n {
					if c.Send([]byte(`"`+payload+`"`)) != nil {
						return
					}
				}
			case !json.Valid(frame):
				c.SendError("bad_json", "frames are JSON")
			default:
				c.SendJSON(map[string]any{"type": "echo", "frame": json.RawMessage(frame)})
			}
		})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), endedc
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func roundTrip(t *testing.T, c *websocket.Conn, typ websocket.MessageType, frame string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, []byte(frame)); err != nil {
		t.Fatalf("Write(%.40q) = %v", frame, err)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("Read after %.40q = %v", frame, err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("answer %q is not JSON: %v", b, err)
	}
	return got
}

func waitEnded(t *testing.T, ended <-chan error) error {
	t.Helper()
	select {
	case err := <-ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the server's Serve did not return within 10 s")
		return nil
	}
}

// TestBadFramesGetErrorFramesAndTheConnectionStays sends malformed JSON and
// a binary frame: each is answered with an error frame, and a good frame
// after them is still served.
func TestBadFramesGetErrorFramesAndTheConnectionStays(t *testing.T) {
	url, ended := echoServer(t, 0, 0)
	c := dial(t, url)
	if got := roundTrip(t, c, websocket.MessageText, `{"type":"send"`); got["type"] != "error" || got["code"] != "bad_json" {
		t.Fatalf("answer to malformed JSON = %v; want an error frame", got)
	}
	if got := roundTrip(t, c, websocket.MessageBinary, `{}`); got["type"] != "error" || got["code"] != "bad_frame" {
		t.Fatalf("answer to a binary frame = %v; want an error frame", got)
	}
	if got := roundTrip(t, c, websocket.MessageText, `{"type":"ping"}`); got["type"] != "echo" {
		t.Fatalf("answer after bad frames = %v; want echo", got)
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitEnded(t, ended)
}

// TestOversizeFrameCloses sends a 65 KiB frame: the connection closes with
// 1009, and a new one is served as before.
func TestOversizeFrameCloses(t *testing.T) {
	url, ended := echoServer(t, 0, 0)
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := `"` + strings.Repeat("x", MaxFrameBytes+1024) + `"`
	c.Write(ctx, websocket.MessageText, []byte(big)) // may fail midway: the server closes
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("Read after a 65 KiB frame = %v; want close status 1009", err)
	}
	waitEnded(t, ended)

	c2 := dial(t, url)
	if got := roundTrip(t, c2, websocket.MessageText, `{"still":"fine"}`); got["type"] != "echo" {
		t.Fatalf("a new connection after the oversize one = %v", got)
	}
	c2.Close(websocket.StatusNormalClosure, "")
	waitEnded(t, ended)
}

// TestSlowConsumerIsDisconnected asks the server for 32 MiB and does not
// read: the server's queue passes its bound and it closes the connection
// with 1013 instead of buffering.
func TestSlowConsumerIsDisconnected(t *testing.T) {
	url, ended := echoServer(t, 32<<10, 1<<10)
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(`"flood"`)); err != nil {
		t.Fatal(err)
	}
	if err := waitEnded(t, ended); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("server ended with %v; want ErrSlowConsumer", err)
	}
	// The client, reading now, gets what had been sent, then the close.
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
				t.Fatalf("client saw %v; want close status 1013", err)
			}
			return
		}
	}
}
