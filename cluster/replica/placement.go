package replica

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// Placement is rendezvous (highest random weight) hashing: each member
// scores every shard, and a shard's replicas are the members with the
// highest scores. Every node computes the same answer from the same member
// list with no coordination, and a member joining or leaving moves only the
// shards whose top members it enters or leaves: about Replicas/members of
// them, the least any placement can move.

// score is member id's weight for shard. FNV-1a is stable across processes
// and releases, which placement needs, but alone it spreads ids that differ
// in one character ("node-1", "node-2") poorly; the splitmix64 finalizer
// mixes every input bit into every output bit.
func score(id string, shard uint16) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	var s [2]byte
	binary.BigEndian.PutUint16(s[:], shard)
	h.Write(s[:])
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// place returns the ids of the n members that should hold shard, best
// first. Ties (astronomically rare) go to the smaller id so that every node
// agrees.
func place(ids []string, shard uint16, n int) []string {
	type ranked struct {
		id    string
		score uint64
	}
	r := make([]ranked, len(ids))
	for i, id := range ids {
		r[i] = ranked{id, score(id, shard)}
	}
	slices.SortFunc(r, func(a, b ranked) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	out := make([]string, 0, min(n, len(r)))
	for _, x := range r[:min(n, len(r))] {
		out = append(out, x.id)
	}
	return out
}
