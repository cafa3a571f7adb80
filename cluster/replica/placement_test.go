package replica

import (
	"fmt"
	"slices"
	"testing"
)

func nodeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i+1)
	}
	return ids
}

// TestPlaceIsOrderFree: every node computes the same placement whatever
// order its member list comes in.
func TestPlaceIsOrderFree(t *testing.T) {
	ids := nodeIDs(5)
	rev := slices.Clone(ids)
	slices.Reverse(rev)
	for s := range uint16(64) {
		if a, b := place(ids, s, 3), place(rev, s, 3); !slices.Equal(a, b) {
			t.Fatalf("shard %d: place = %v in one order, %v in another", s, a, b)
		}
	}
	if got := place(ids[:2], 0, 3); len(got) != 2 {
		t.Errorf("place(2 members, 3 replicas) = %v; want both", got)
	}
}

// TestPlaceSpreads: over 64 shards, each of 5 nodes holds close to its
// share of 64*3/5 replicas, and leads (holds the first place of) close to
// 64/5 shards, with ids that differ in one character.
func TestPlaceSpreads(t *testing.T) {
	ids := nodeIDs(5)
	replicas, firsts := map[string]int{}, map[string]int{}
	for s := range uint16(64) {
		p := place(ids, s, 3)
		firsts[p[0]]++
		for _, id := range p {
			replicas[id]++
		}
	}
	t.Logf("replicas per node %v; first places %v", replicas, firsts)
	for _, id := range ids {
		if r := replicas[id]; r < 26 || r > 51 { // share 38.4
			t.Errorf("%s holds %d of 192 replicas; want about 38", id, r)
		}
	}
}

// TestPlaceMovesLittle: a fifth node joining four takes a replica of about
// 3/5 of the shards, one each, and moves nothing between the four.
func TestPlaceMovesLittle(t *testing.T) {
	before, after := nodeIDs(4), nodeIDs(5)
	moved := 0
	for s := range uint16(64) {
		a, b := place(before, s, 3), place(after, s, 3)
		var gone, come []string
		for _, id := range a {
			if !slices.Contains(b, id) {
				gone = append(gone, id)
			}
		}
		for _, id := range b {
			if !slices.Contains(a, id) {
				come = append(come, id)
			}
		}
		switch {
		case len(come) == 0 && len(gone) == 0:
		case len(come) == 1 && len(gone) == 1 && come[0] == "node-5":
			moved++
		default:
			t.Errorf("shard %d: %v -> %v: want at most one replica moved, to node-5", s, a, b)
		}
	}
	t.Logf("node-5 joining 4 nodes moves a replica of %d of 64 shards (expected about %d)", moved, 64*3/5)
	if moved < 25 || moved > 50 {
		t.Errorf("%d shards moved; want about 38", moved)
	}
}
