package storage

import (
	"errors"
	"fmt"
	"log/slog"
)

// Options configures a DB. The zero value of every field but Dir and
// MasterKey means "the default"; call EnsureDefaults and Validate, or let
// Open do it.
type Options struct {
	// Dir is the store's directory: Pebble's files and the KEYCHECK file that
	// proves which master key the store belongs to. It is created (0700) when
	// missing.
	Dir string

	// MasterKey is the 32-byte key-encryption key that wraps every tenant key.
	// It is never written into Dir (see LoadMasterKey for where it comes from).
	MasterKey []byte

	// Shards is the number of shards the keyspace is split into. It is fixed
	// when the store is created and recorded in it; 0 means "what the store
	// records", or DefaultShards for a new store. A different non-zero value
	// on an existing store is refused. Range 1..MaxShards.
	Shards int

	// KeyCacheEntries bounds how many unwrapped data keys are held in memory.
	// A miss costs one Pebble read and one AES-GCM open per level of the
	// hierarchy. Default 16384 (about 3 MiB).
	KeyCacheEntries int

	// RotateAfter is how many encryptions one generation of a data key may
	// perform before a new generation replaces it for sealing. AES-GCM with
	// random 96-bit nonces must stay well below 2^32 encryptions per key
	// (NIST SP 800-38D); the default, 2^28, leaves a factor of 16. Old
	// generations stay to open what they sealed.
	RotateAfter uint64

	// CacheBytes is the size of Pebble's block cache. Reads that miss it go
	// to the OS. Default 64 MiB.
	CacheBytes int64

	// Logger receives Pebble's errors and storage's warnings. Default: the
	// process's slog default logger.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultShards          = 64
	DefaultKeyCacheEntries = 16384
	DefaultRotateAfter     = 1 << 28
	DefaultCacheBytes      = 64 << 20
)

// EnsureDefaults fills zero fields with their defaults. Shards stays 0: Open
// resolves it against what the store records.
func (o *Options) EnsureDefaults() {
	if o.KeyCacheEntries == 0 {
		o.KeyCacheEntries = DefaultKeyCacheEntries
	}
	if o.RotateAfter == 0 {
		o.RotateAfter = DefaultRotateAfter
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports the first invalid field.
func (o *Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("storage: Options.Dir is empty")
	case len(o.MasterKey) != MasterKeyLen:
		return fmt.Errorf("storage: Options.MasterKey is %d bytes; want %d", len(o.MasterKey), MasterKeyLen)
	case o.Shards < 0 || o.Shards > MaxShards:
		return fmt.Errorf("storage: Options.Shards = %d; want 1..%d", o.Shards, MaxShards)
	case o.KeyCacheEntries < 1:
		return fmt.Errorf("storage: Options.KeyCacheEntries = %d; want at least 1", o.KeyCacheEntries)
	case o.CacheBytes < 0:
		return fmt.Errorf("storage: Options.CacheBytes = %d; want at least 0", o.CacheBytes)
	case o.RotateAfter > 1<<31:
		return fmt.Errorf("storage: Options.RotateAfter = %d; AES-GCM must rotate before 2^31", o.RotateAfter)
	}
	return nil
}

// reserveBlock is how many encryptions are reserved by one write of a key
// record: large enough that reservations are rare, small enough that a crash
// wastes little of a generation's budget.
func (o *Options) reserveBlock() uint64 {
	return max(1, min(1<<16, o.RotateAfter/16))
}
