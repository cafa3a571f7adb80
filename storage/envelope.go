package storage

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
)

// The sealed envelope. Every value in Pebble is
//
//	version (1) | key id (16) | generation (4, big endian) | nonce (12) | ciphertext and GCM tag (n+16)
//
// The key id names the logical key (a tenant, a person, a month) and the
// generation names which of its rotated materials sealed this value, so
// opening needs no lookup beyond the keyring. The additional data of the
// AEAD is the 21-byte header followed by the Pebble key the value is stored
// under: a value copied or moved to another key, or relabelled with another
// key id or generation, fails to open instead of yielding its plaintext.
//
// The version byte lets the format change later without guessing; readers
// reject versions they do not know.

const (
	envelopeVersion = 0x01
	headerLen       = 1 + keyIDLen + 4
	nonceLen        = 12
	tagLen          = 16
	// EnvelopeOverhead is how many bytes sealing adds to a plaintext.
	EnvelopeOverhead = headerLen + nonceLen + tagLen
)

// envelope is a parsed, not yet opened, sealed value. Its slices alias the
// input.
type envelope struct {
	header     []byte // version | key id | generation
	keyID      KeyID
	generation uint32
	nonce      []byte
	ciphertext []byte // includes the tag
}

// parseEnvelope splits a sealed value into its parts. It checks structure
// only; authenticity is checked when the value is opened.
func parseEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < EnvelopeOverhead {
		return e, fmt.Errorf("%w: %d bytes is shorter than an envelope", ErrCorrupt, len(b))
	}
	if b[0] != envelopeVersion {
		return e, fmt.Errorf("%w: unknown envelope version %d", ErrCorrupt, b[0])
	}
	e.header = b[:headerLen]
	copy(e.keyID[:], b[1:1+keyIDLen])
	if !e.keyID.Kind().valid() {
		return e, fmt.Errorf("%w: unknown key kind %d", ErrCorrupt, e.keyID[0])
	}
	e.generation = binary.BigEndian.Uint32(b[1+keyIDLen : headerLen])
	e.nonce = b[headerLen : headerLen+nonceLen]
	e.ciphertext = b[headerLen+nonceLen:]
	return e, nil
}

// sealWith appends to dst the envelope of plaintext under aead, which is
// generation gen of key id, bound to the Pebble key pkey. scratch is room
// for the additional data (any length; nil allocates) and must not overlap
// dst's capacity.
func sealWith(dst, scratch []byte, aead cipher.AEAD, id KeyID, gen uint32, pkey, plaintext []byte) []byte {
	dst = slices.Grow(dst, EnvelopeOverhead+len(plaintext)) // one allocation, not one per part
	start := len(dst)
	dst = append(dst, envelopeVersion)
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint32(dst, gen)
	dst = append(dst, make([]byte, nonceLen)...)
	nonce := dst[start+headerLen:]
	rand.Read(nonce) // never fails (crypto/rand, Go ≥ 1.24)
	ad := append(append(scratch[:0], dst[start:start+headerLen]...), pkey...)
	return aead.Seal(dst, nonce, plaintext, ad)
}

// openWith opens e with aead, the material its header names.
func openWith(aead cipher.AEAD, e envelope, pkey []byte) ([]byte, error) {
	pt, err := aead.Open(nil, e.nonce, e.ciphertext, additionalData(e.header, pkey))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return pt, nil
}

func additionalData(header, pkey []byte) []byte {
	ad := make([]byte, 0, len(header)+len(pkey))
	return append(append(ad, header...), pkey...)
}
