package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/storage"
)

// The shred ledger file: key ids and the times they were shredded, one a
// line, in clear text so that an operator can read what it holds (no
// personal data: a key id is a hash of random ids) and so that a ledger
// taken from any node of the cluster, whatever its master key, applies to
// any restore:
//
//	# chatpacket shred ledger v1
//	subject:3f…e1 2026-01-02T03:04:05Z
//	…
//	# entries 2 sha256 9a…
//
// The last line counts the entries and hashes every line before it, so a
// file cut short or edited by hand is refused, never read as a shorter
// ledger (which would bring erased data back).

const ledgerHeader = "# chatpacket shred ledger v1"

// WriteLedger writes entries in the ledger file format.
func WriteLedger(w io.Writer, entries []storage.ShredRecord) error {
	var body bytes.Buffer
	body.WriteString(ledgerHeader + "\n")
	for _, e := range entries {
		fmt.Fprintf(&body, "%s %s\n", e.KeyID, e.At.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(body.Bytes())
	fmt.Fprintf(&body, "# entries %d sha256 %s\n", len(entries), hex.EncodeToString(sum[:]))
	_, err := w.Write(body.Bytes())
	return err
}

// ReadLedger reads a ledger file written by WriteLedger (a backup's
// ledger.txt, or `chatpacket admin ledger export`).
func ReadLedger(path string) ([]storage.ShredRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backup: ledger: %w", err)
	}
	entries, err := parseLedger(b)
	if err != nil {
		return nil, fmt.Errorf("backup: ledger %s: %w", path, err)
	}
	return entries, nil
}

func parseLedger(b []byte) ([]storage.ShredRecord, error) {
	trailerAt := bytes.LastIndex(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if !bytes.HasPrefix(b, []byte(ledgerHeader+"\n")) || trailerAt < 0 {
		return nil, fmt.Errorf("not a shred ledger (want a first line %q)", ledgerHeader)
	}
	body, trailer := b[:trailerAt+1], strings.Fields(string(b[trailerAt+1:]))
	if len(trailer) != 5 || trailer[0] != "#" || trailer[1] != "entries" || trailer[3] != "sha256" {
		return nil, fmt.Errorf("no closing checksum line: the file was cut short")
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != trailer[4] {
		return nil, fmt.Errorf("checksum mismatch: the file was changed or cut short")
	}
	want, err := strconv.Atoi(trailer[2])
	if err != nil {
		return nil, fmt.Errorf("bad entry count %q", trailer[2])
	}
	var out []storage.ShredRecord
	sc := bufio.NewScanner(bytes.NewReader(body))
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want KEY_ID TIME", line)
		}
		id, err := storage.ParseKeyID(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		at, err := time.Parse(time.RFC3339, f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, storage.ShredRecord{KeyID: id, At: at})
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d entries; its checksum line says %d", len(out), want)
	}
	return out, nil
}

// MergeLedgers is the union of ledgers: every key id any of them holds,
// with the earliest time one gives, ordered by key id. Shredding only
// ever adds to a ledger, so the union of an old and a newer ledger is the
// newer one plus anything only a node that missed the exchange knew.
func MergeLedgers(ledgers ...[]storage.ShredRecord) []storage.ShredRecord {
	first := map[storage.KeyID]time.Time{}
	for _, l := range ledgers {
		for _, e := range l {
			if at, ok := first[e.KeyID]; !ok || e.At.Before(at) {
				first[e.KeyID] = e.At
			}
		}
	}
	out := make([]storage.ShredRecord, 0, len(first))
	for id, at := range first {
		out = append(out, storage.ShredRecord{KeyID: id, At: at})
	}
	slices.SortFunc(out, func(a, b storage.ShredRecord) int { return bytes.Compare(a.KeyID[:], b.KeyID[:]) })
	return out
}
