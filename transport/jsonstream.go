package transport

import (
	"encoding/json"
	"fmt"
	"io"
)

// jsonStream writes a JSON document piece by piece as it is read from the
// store (the exports), so that no answer is ever held whole. It writes no
// newline of its own: the tenant export puts one after each item of its
// long arrays and nowhere else, which is what a client counts to show
// progress (JSON strings never hold a raw newline).
//
// The first write error sticks: later writes do nothing, and err reports it.
type jsonStream struct {
	w   io.Writer
	err error
}

// raw writes s as it is: punctuation and keys the caller composes.
func (s *jsonStream) raw(str string) {
	if s.err == nil {
		_, s.err = io.WriteString(s.w, str)
	}
}

// value writes v as JSON.
func (s *jsonStream) value(v any) {
	if s.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return
	}
	_, s.err = s.w.Write(b)
}

// list writes the items of an array one at a time: next writes the comma
// before every item but the first.
type list struct {
	s *jsonStream
	n int
}

func (l *list) next() {
	if l.n > 0 {
		l.s.raw(",")
	}
	l.n++
}

func listOf(s *jsonStream) *list { return &list{s: s} }

// open writes v, a struct that marshals to a non-empty JSON object, without
// its closing brace: the caller streams more fields after it (`,"k":…`)
// and closes it.
func (s *jsonStream) open(v any) {
	if s.err != nil {
		return
	}
	b, err := json.Marshal(v)
	switch {
	case err != nil:
		s.err = err
	case len(b) < 3 || b[0] != '{' || b[len(b)-1] != '}':
		s.err = fmt.Errorf("jsonStream.open: %T is not a non-empty object", v)
	default:
		_, s.err = s.w.Write(b[:len(b)-1])
	}
}
