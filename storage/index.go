package storage

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
)

// Blind returns the blind-index token of value for purpose under ref:
// HMAC-SHA256 keyed by a key derived from ref's key. Store records by their
// token to find them by an email or similar without the value ever being in
// a Pebble key. Tokens die with the key: after ref's key (or an ancestor) is
// shredded, Blind returns ErrErased.
func (db *DB) Blind(ctx context.Context, ref KeyRef, purpose string, value []byte) ([]byte, error) {
	leave, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	bk, err := db.keys.blindKey(ctx, ref, purpose)
	if err != nil {
		return nil, err
	}
	return hmacSHA256(bk, value), nil
}

func hmacSHA256(key, value []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(value)
	return m.Sum(nil)
}
