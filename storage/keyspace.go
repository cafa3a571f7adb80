package storage

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash/fnv"
)

// The keyspace. Every Pebble key is
//
//	shard (uint16, big endian) | table (1 byte) | id bytes …
//
// Shards group the records that one raft group will own (step 3 of the
// roadmap); tables separate record types within a shard; ids are random.
// No name, email, message or other personal data is ever part of a key: a
// lookup by such a value goes through a blind index (see Blind).

// Table is the second component of every key: the record type.
type Table byte

// Tables used by storage itself. Tables of the product start at
// TableFirstUser so that both can grow without colliding.
const (
	TableKey    Table = 0x01 // key records (KeyRecord), one per logical key
	TableLedger Table = 0x02 // shred ledger (ShredEntry), one per shredded key
	TableMeta   Table = 0x03 // store metadata, in SystemShard only

	// The raft tables hold each shard's raft group state on this node
	// (cluster/raftstore). They are node-local: a replica's snapshot or
	// restore of a shard's replicated tables must leave them alone, or the
	// group would lose its own log and vote.
	TableRaftLog          Table = 0x04 // raft log entries by big-endian uint64 index
	TableRaftStable       Table = 0x05 // raft's stable values (current term, vote) by raft's key name
	TableRaftSnapshot     Table = 0x06 // raft snapshot data chunks by snapshot id, big-endian uint32 chunk number
	TableRaftSnapshotMeta Table = 0x07 // raft snapshot metadata by snapshot id, written after all its chunks

	TableFirstUser Table = 0x20
)

// SystemShard holds node-local records that belong to no shard (store
// metadata). Shard numbers of data are always below it.
const SystemShard uint16 = 0xFFFF

// MaxShards bounds the shard count so that SystemShard stays out of range.
const MaxShards = 4096

// ID is an opaque random identifier of an entity (tenant, visitor,
// conversation …). Its text form is 26 lowercase base32 characters.
type ID [16]byte

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a fresh random ID.
func NewID() ID {
	var id ID
	rand.Read(id[:]) // never fails (crypto/rand, Go ≥ 1.24)
	return id
}

func (id ID) String() string { return idEncoding.EncodeToString(id[:]) }

// ParseID parses the text form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != idEncoding.EncodedLen(len(id)) {
		return id, fmt.Errorf("storage: parse id %q: want %d characters", s, idEncoding.EncodedLen(len(id)))
	}
	n, err := idEncoding.Decode(id[:], []byte(s))
	if err != nil || n != len(id) {
		return ID{}, fmt.Errorf("storage: parse id %q: not base32", s)
	}
	return id, nil
}

// BytesID is the ID held in raw, as records store ids: the zero ID when
// raw is not 16 bytes, which no record written through a validated command
// holds.
func BytesID(raw []byte) ID {
	var id ID
	if len(raw) == len(id) {
		copy(id[:], raw)
	}
	return id
}

// ShardOf maps bytes (an entity id) to one of shards shards. FNV-1a is stable
// across processes and releases, which placement needs; ids are random, so
// its spread is even.
func ShardOf(id []byte, shards int) uint16 {
	h := fnv.New64a()
	h.Write(id)
	return uint16(h.Sum64() % uint64(shards))
}

// Key builds a Pebble key from its components.
func Key(shard uint16, table Table, parts ...[]byte) []byte {
	n := 3
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 3, n)
	binary.BigEndian.PutUint16(k, shard)
	k[2] = byte(table)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// TablePrefix is the prefix of every key of one table in one shard.
func TablePrefix(shard uint16, table Table) []byte { return Key(shard, table) }

// PrefixEnd returns the smallest key greater than every key with prefix p.
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
