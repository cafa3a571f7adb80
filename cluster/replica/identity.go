package replica

import (
	"context"
	"errors"
	"fmt"

	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// tableIdentity holds, in storage.SystemShard, the shard count and node id
// this store's raft groups were first started with. It is node-local, like
// the raft tables, and below storage.TableFirstUser so that no shard
// snapshot carries it.
const tableIdentity storage.Table = 0x10

var (
	shardsKey = storage.Key(storage.SystemShard, tableIdentity, []byte("shards"))
	nodeKey   = storage.Key(storage.SystemShard, tableIdentity, []byte("node"))
)

// checkIdentity refuses a store whose raft groups were started with another
// shard count or node id, and records both on a store's first start. Raft
// state is per shard number and names its server id in every vote and
// configuration: a different count would remap every key to another
// group, and a different id would make this node a stranger in its own
// groups.
func checkIdentity(ctx context.Context, db *storage.DB, nodeID string, shards int) error {
	var n wrapperspb.UInt32Value
	if err := readOrWrite(ctx, db, shardsKey, &n, wrapperspb.UInt32(uint32(shards))); err != nil {
		return fmt.Errorf("replica: shard count record: %w", err)
	}
	if int(n.Value) != shards {
		return fmt.Errorf("replica: this store's raft groups were started with %d shards; refusing to start with %d", n.Value, shards)
	}
	var id wrapperspb.StringValue
	if err := readOrWrite(ctx, db, nodeKey, &id, wrapperspb.String(nodeID)); err != nil {
		return fmt.Errorf("replica: node id record: %w", err)
	}
	if id.Value != nodeID {
		return fmt.Errorf("replica: this store's raft state belongs to node %q; refusing to start as %q", id.Value, nodeID)
	}
	return nil
}

// readOrWrite reads key into into, or writes def there (and into into)
// when the key is absent.
func readOrWrite(ctx context.Context, db *storage.DB, key []byte, into, def proto.Message) error {
	err := db.Get(ctx, key, into)
	if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if err := db.Put(ctx, key, storage.RaftLogKey, def); err != nil {
		return err
	}
	proto.Merge(into, def)
	return nil
}

// NodeID returns the id of the node whose store db is, made on first use
// ("n-" and 12 random base32 characters). It names the node in every
// shard's raft configuration and its gossip metadata, so it lives in the
// store and outlives restarts; Start checks it against this record.
func NodeID(ctx context.Context, db *storage.DB) (string, error) {
	var id wrapperspb.StringValue
	fresh := wrapperspb.String("n-" + storage.NewID().String()[:12])
	if err := readOrWrite(ctx, db, nodeKey, &id, fresh); err != nil {
		return "", fmt.Errorf("replica: node id record: %w", err)
	}
	return id.Value, nil
}
