package backup

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func seal(t *testing.T, key, pt []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newSealWriter(&buf, key, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Odd-sized writes, so chunks fill across calls.
	for p := pt; len(p) > 0; {
		n := min(len(p), 1000)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func open(key, sealed []byte) ([]byte, error) {
	r, err := newOpenReader(bytes.NewReader(sealed), key, "test")
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// chunks splits a sealed file into its chunks, header apart.
func chunks(b []byte) [][]byte {
	var out [][]byte
	for p := b[headerSize:]; len(p) > 0; {
		n := 4 + int(binary.BigEndian.Uint32(p))
		out = append(out, p[:n])
		p = p[n:]
	}
	return out
}

// TestSealedStream: any size round-trips; dropping the last chunk (a cut
// at a chunk boundary), swapping chunks, adding bytes, another key or
// another purpose all fail with ErrTampered.
func TestSealedStream(t *testing.T) {
	key := newKey()
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3 * chunkSize} {
		pt := make([]byte, size)
		rand.Read(pt)
		sealed := seal(t, key, pt)
		if got, err := open(key, sealed); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("size %d: open = %d bytes, %v; want the %d bytes sealed", size, len(got), err, size)
		}
		cs := chunks(sealed)
		if want := max(1, (size+chunkSize-1)/chunkSize); len(cs) != want {
			t.Fatalf("size %d: %d chunks; want %d", size, len(cs), want)
		}
		header := sealed[:headerSize]
		bad := map[string][]byte{
			"trailing byte": append(bytes.Clone(sealed), 0),
			"other key":     nil,
		}
		if len(cs) > 1 {
			bad["last chunk dropped"] = bytes.Join(append([][]byte{header}, cs[:len(cs)-1]...), nil)
			bad["chunks swapped"] = bytes.Join(append([][]byte{header, cs[1], cs[0]}, cs[2:]...), nil)
		}
		for name, b := range bad {
			k := key
			if b == nil {
				b, k = sealed, newKey()
			}
			if _, err := open(k, b); !errors.Is(err, ErrTampered) {
				t.Errorf("size %d, %s: %v; want ErrTampered", size, name, err)
			}
		}
		r, _ := newOpenReader(bytes.NewReader(sealed), key, "other purpose")
		if _, err := io.ReadAll(r); !errors.Is(err, ErrTampered) {
			t.Errorf("size %d, read for another purpose: %v; want ErrTampered", size, err)
		}
	}
}
