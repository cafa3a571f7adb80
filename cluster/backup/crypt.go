package backup

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The sealed container of a backup's data file. The file is
//
//	header: magic "CPBACKUP" (8) | version (1) | salt (32)
//	chunks: length (4, big endian) | AES-256-GCM ciphertext and tag
//
// Each file has its own random salt, and its key is HKDF-SHA256 of the
// master key with that salt and the file's purpose as info, so no two
// files share a key and the master key itself never encrypts bulk data.
// Chunk i (from 0) is sealed with the nonce i (8 bytes, big endian, then 4
// zero bytes: unique within the file's key) and the additional data
// header | i | final, where final is 1 on the last chunk only. So a chunk
// moved, dropped, repeated or taken from another file fails to open, and
// a file cut at a chunk boundary lacks its final chunk: truncation and
// tampering are both detected, never read as a shorter backup.

const (
	magic         = "CPBACKUP"
	streamVersion = 1
	saltLen       = 32
	headerSize    = len(magic) + 1 + saltLen
	chunkSize     = 64 << 10 // plaintext bytes per chunk
	tagSize       = 16
)

// ErrTampered reports a backup file that fails authentication: changed,
// cut short, or sealed under another master key.
var ErrTampered = errors.New("backup: file fails authentication (changed, truncated, or made with another master key)")

func streamAEAD(masterKey, salt []byte, purpose string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, masterKey, salt, "chatpacket backup v1 "+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("backup: derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("backup: cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealWriter encrypts what is written to it into w, chunk by chunk. Close
// writes the final chunk; a file without it reads as truncated.
type sealWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	header []byte
	buf    []byte // plaintext of the chunk being filled
	out    []byte // ciphertext scratch
	n      uint64 // chunks written
	closed bool
}

func newSealWriter(w io.Writer, masterKey []byte, purpose string) (*sealWriter, error) {
	header := make([]byte, 0, headerSize)
	header = append(header, magic...)
	header = append(header, streamVersion)
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails (crypto/rand, Go ≥ 1.24)
	header = append(header, salt...)
	aead, err := streamAEAD(masterKey, salt, purpose)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(header); err != nil {
		return nil, err
	}
	return &sealWriter{w: w, aead: aead, header: header, buf: make([]byte, 0, chunkSize)}, nil
}

func (s *sealWriter) Write(p []byte) (int, error) {
	if s.closed {
		return 0, errors.New("backup: write after close")
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), chunkSize-len(s.buf))
		s.buf = append(s.buf, p[:n]...)
		p, written = p[n:], written+n
		// A full chunk is sealed only once more data comes: the last one
		// must carry the final flag, and only Close knows which it is.
		if len(s.buf) == chunkSize && len(p) > 0 {
			if err := s.flush(false); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (s *sealWriter) flush(final bool) error {
	nonce, ad := chunkNonceAD(s.header, s.n, final)
	s.out = s.aead.Seal(binary.BigEndian.AppendUint32(s.out[:0], uint32(len(s.buf)+tagSize)), nonce, s.buf, ad)
	if _, err := s.w.Write(s.out); err != nil {
		return err
	}
	s.n++
	s.buf = s.buf[:0]
	return nil
}

// Close seals the last chunk. It does not close the underlying writer.
func (s *sealWriter) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.flush(true)
}

func chunkNonceAD(header []byte, n uint64, final bool) (nonce, ad []byte) {
	nonce = binary.BigEndian.AppendUint64(make([]byte, 0, 12), n)
	nonce = append(nonce, 0, 0, 0, 0)
	ad = binary.BigEndian.AppendUint64(append(make([]byte, 0, len(header)+9), header...), n)
	if final {
		return nonce, append(ad, 1)
	}
	return nonce, append(ad, 0)
}

// openReader decrypts a sealWriter's output. Read returns ErrTampered for
// any chunk that fails to open, for a file that ends before its final
// chunk and for bytes after it.
type openReader struct {
	r      io.Reader
	aead   cipher.AEAD
	header []byte
	pt     []byte // plaintext not yet read
	ct     []byte // ciphertext scratch
	n      uint64
	final  bool
}

func newOpenReader(r io.Reader, masterKey []byte, purpose string) (*openReader, error) {
	header := make([]byte, headerSize)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, fmt.Errorf("%w: no header: %v", ErrTampered, err)
	}
	if string(header[:len(magic)]) != magic {
		return nil, fmt.Errorf("backup: not a ChatPacket backup file (bad magic)")
	}
	if v := header[len(magic)]; v != streamVersion {
		return nil, fmt.Errorf("backup: file format version %d; this build reads version %d", v, streamVersion)
	}
	aead, err := streamAEAD(masterKey, header[len(magic)+1:], purpose)
	if err != nil {
		return nil, err
	}
	return &openReader{r: r, aead: aead, header: header}, nil
}

func (o *openReader) Read(p []byte) (int, error) {
	for len(o.pt) == 0 {
		if o.final {
			var one [1]byte
			if n, _ := io.ReadFull(o.r, one[:]); n > 0 {
				return 0, fmt.Errorf("%w: data after the final chunk", ErrTampered)
			}
			return 0, io.EOF
		}
		if err := o.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, o.pt)
	o.pt = o.pt[n:]
	return n, nil
}

func (o *openReader) next() error {
	var lenBuf [4]byte
	if _, err := io.ReadFull(o.r, lenBuf[:]); err != nil {
		return fmt.Errorf("%w: ends before its final chunk (chunk %d): %v", ErrTampered, o.n, err)
	}
	size := binary.BigEndian.Uint32(lenBuf[:])
	if size < tagSize || size > chunkSize+tagSize {
		return fmt.Errorf("%w: chunk %d claims %d bytes", ErrTampered, o.n, size)
	}
	o.ct = append(o.ct[:0], make([]byte, size)...)
	if _, err := io.ReadFull(o.r, o.ct); err != nil {
		return fmt.Errorf("%w: chunk %d cut short: %v", ErrTampered, o.n, err)
	}
	// Try it as an inner chunk, then as the final one: the flag is
	// authenticated, not stored.
	for _, final := range []bool{false, true} {
		nonce, ad := chunkNonceAD(o.header, o.n, final)
		if pt, err := o.aead.Open(o.pt[:0], nonce, o.ct, ad); err == nil {
			o.pt, o.final = pt, final
			o.n++
			return nil
		}
	}
	return fmt.Errorf("%w: chunk %d", ErrTampered, o.n)
}
