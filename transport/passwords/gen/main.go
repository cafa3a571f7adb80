// Command gen writes the most common passwords, one a line, most common
// first: the head of the "passwords" frequency list of
// github.com/trustelem/zxcvbn (itself from Dropbox's zxcvbn, which ranks
// passwords of public breach corpora by frequency). It runs from `go
// generate` in the parent directory; the list it writes is committed, so
// neither this program nor zxcvbn is part of the product's binary.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/trustelem/zxcvbn/frequency"
)

func main() {
	n := flag.Int("n", 10000, "how many passwords")
	out := flag.String("o", "common.txt", "output file")
	flag.Parse()
	if err := run(*n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(n int, out string) error {
	list := frequency.FrequencyLists["passwords"]
	if len(list) < n {
		return fmt.Errorf("the list has %d passwords; want %d", len(list), n)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	seen := map[string]bool{}
	for _, p := range list[:n] {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" || seen[p] || strings.ContainsAny(p, "\r\n") {
			continue
		}
		seen[p] = true
		fmt.Fprintln(w, p)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
