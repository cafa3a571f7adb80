// Package widgetui holds the chat widget's browser assets, embedded in the
// binary: loader.js (the script a business pastes into its site; it adds
// the chat frame as an iframe and keeps the visitor's session id in the
// site's own storage) and the frame itself (frame.html, frame.css,
// frame.js), which talks to the API and /ws/widget from ChatPacket's
// origin. They are plain JavaScript and CSS: no framework, no bundler, and
// nothing fetched from any third party.
//
// The files and their gzip forms are computed once and never change:
// everything here is safe for concurrent use.
package widgetui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"sync"
)

//go:embed loader.js frame.html frame.css frame.js
var files embed.FS

// The names of the assets.
const (
	Loader    = "loader.js"
	FrameHTML = "frame.html"
	FrameCSS  = "frame.css"
	FrameJS   = "frame.js"
)

// File is one asset, ready to serve.
type File struct {
	Name        string
	ContentType string
	Body        []byte
	// Gzip is Body compressed at gzip's best compression.
	Gzip []byte
	// ETag is a strong validator of Body (quoted).
	ETag string
}

var all = sync.OnceValue(func() map[string]*File {
	types := map[string]string{
		Loader:    "application/javascript; charset=utf-8",
		FrameHTML: "text/html; charset=utf-8",
		FrameCSS:  "text/css; charset=utf-8",
		FrameJS:   "application/javascript; charset=utf-8",
	}
	out := make(map[string]*File, len(types))
	for name, ct := range types {
		body, err := files.ReadFile(name)
		if err != nil {
			panic("widgetui: embedded " + name + " missing: " + err.Error()) // the build embeds it
		}
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		w.Write(body)
		w.Close()
		sum := sha256.Sum256(body)
		out[name] = &File{Name: name, ContentType: ct, Body: body, Gzip: gz.Bytes(),
			ETag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
	}
	return out
})

// Lookup returns the asset called name, or nil.
func Lookup(name string) *File { return all()[name] }
