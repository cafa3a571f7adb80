package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// KeyKind is the first byte of a KeyID: what the key belongs to, which also
// fixes its parent in the hierarchy.
type KeyKind byte

const (
	KindMaster  KeyKind = 0x01 // the KEK: given by the operator, never stored
	KindTenant  KeyKind = 0x02 // one per tenant, wrapped by the master key
	KindSubject KeyKind = 0x03 // one per person (visitor, agent), wrapped by a tenant key
	KindMonth   KeyKind = 0x04 // one per tenant and month (analytics), wrapped by a tenant key
	KindIndex   KeyKind = 0x05 // cluster-wide blind indexes, wrapped by the master key
)

func (k KeyKind) valid() bool { return k >= KindMaster && k <= KindIndex }

func (k KeyKind) String() string {
	switch k {
	case KindMaster:
		return "master"
	case KindTenant:
		return "tenant"
	case KindSubject:
		return "subject"
	case KindMonth:
		return "month"
	case KindIndex:
		return "index"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

const keyIDLen = 16

// KeyID names one logical key: kind byte, then 15 bytes derived from what the
// key belongs to. Deriving ids (rather than drawing them at random and
// keeping an index) lets a key be found and created lazily from the ids of
// its owner alone, and the owner ids are random, so a KeyID reveals nothing.
type KeyID [keyIDLen]byte

// MasterKeyID names the master key in envelopes. The envelope's generation
// field carries the master key's generation, which is 0 until the operator
// rotates the master key.
var MasterKeyID = KeyID{byte(KindMaster)}

// Kind reports what the key belongs to.
func (id KeyID) Kind() KeyKind { return KeyKind(id[0]) }

func (id KeyID) String() string { return id.Kind().String() + ":" + hex.EncodeToString(id[1:]) }

// ParseKeyID parses the String form of a KeyID.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	for k := KindMaster; k <= KindIndex; k++ {
		p := k.String() + ":"
		if len(s) != len(p)+2*(keyIDLen-1) || s[:len(p)] != p {
			continue
		}
		if _, err := hex.Decode(id[1:], []byte(s[len(p):])); err != nil {
			return KeyID{}, fmt.Errorf("storage: parse key id %q: %w", s, err)
		}
		id[0] = byte(k)
		return id, nil
	}
	return KeyID{}, fmt.Errorf("storage: parse key id %q: want KIND:30 hex digits", s)
}

func deriveKeyID(kind KeyKind, parts ...[]byte) KeyID {
	h := sha256.New()
	h.Write([]byte("chatpacket key id v1"))
	h.Write([]byte{byte(kind)})
	for _, p := range parts {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		h.Write(p)
	}
	var id KeyID
	id[0] = byte(kind)
	copy(id[1:], h.Sum(nil))
	return id
}

// KeyRef says which key seals a value and, because keys are created on first
// use, which key wraps it.
type KeyRef struct {
	ID     KeyID
	Parent KeyID
}

// TenantKey is the key of everything a tenant holds that belongs to no one
// person: settings, conversations' metadata. Shredding it erases the tenant,
// and with it every subject and month key it wraps.
func TenantKey(tenant ID) KeyRef {
	return KeyRef{ID: deriveKeyID(KindTenant, tenant[:]), Parent: MasterKeyID}
}

// SubjectKey is the key of one person's data within a tenant (a visitor's
// messages, contact and technical data; an agent's profile). Shredding it
// erases that person.
func SubjectKey(tenant, subject ID) KeyRef {
	return KeyRef{ID: deriveKeyID(KindSubject, tenant[:], subject[:]), Parent: TenantKey(tenant).ID}
}

// MonthKey is the key of a tenant's visitor analytics of one calendar month
// (UTC). Retention shreds it twelve months later.
func MonthKey(tenant ID, month time.Time) KeyRef {
	m := month.UTC()
	ym := binary.BigEndian.AppendUint32(nil, uint32(m.Year()*100+int(m.Month())))
	return KeyRef{ID: deriveKeyID(KindMonth, tenant[:], ym), Parent: TenantKey(tenant).ID}
}

// GlobalIndexKey keys the blind indexes that span tenants (an agent's email
// at login, before the tenant is known).
var GlobalIndexKey = KeyRef{ID: deriveKeyID(KindIndex, []byte("global")), Parent: MasterKeyID}

// RaftLogKey seals this node's raft state (cluster/raftstore): the log
// entries, the stable values and the snapshots of every shard's raft group.
// It is an index key, wrapped by the master key, because that state belongs
// to the node, not to one tenant or person.
//
// Raft log entries carry commands whole, message bodies included, so a
// person's data also lives here, under a key that erasing the person does
// not destroy. It lives until the group's next snapshot truncates the log
// (raft keeps Config.TrailingLogs entries behind the snapshot), and the
// snapshot store keeps its newest few snapshots: those two settings bound
// how long an erased person's data survives in raft state. The FSM's
// snapshots should therefore hold values as the store holds them, sealed
// under their subject keys, so that shredding reaches them too.
var RaftLogKey = KeyRef{ID: deriveKeyID(KindIndex, []byte("raft log")), Parent: MasterKeyID}

// parentOf returns the parent of a key whose own KeyRef is not at hand: the
// kinds fix it for every key that wraps others, which is all ensure needs.
func parentOf(id KeyID) (KeyID, bool) {
	switch id.Kind() {
	case KindTenant, KindIndex:
		return MasterKeyID, true
	}
	return KeyID{}, false
}
