package storage

import "errors"

var (
	// ErrErased reports data sealed under a key that was shredded, directly or
	// through a key that wrapped it. It is an answer, not a failure: callers
	// render the record as "erased".
	ErrErased = errors.New("storage: erased")

	// ErrNotFound reports that no record exists under a key.
	ErrNotFound = errors.New("storage: not found")

	// ErrCorrupt reports a value that fails authentication or does not parse:
	// tampering, a value moved to another key, or a damaged file. Never
	// returned together with plaintext.
	ErrCorrupt = errors.New("storage: corrupt value")

	// ErrWrongMasterKey reports a master key that is not the one the data dir
	// was created with. Nothing in the data dir is changed.
	ErrWrongMasterKey = errors.New("storage: wrong master key")

	// ErrNoMasterKey reports a data dir that holds data but no master key was
	// given and none is stored beside it.
	ErrNoMasterKey = errors.New("storage: no master key")

	// ErrClosed reports use of a DB after Close.
	ErrClosed = errors.New("storage: closed")
)
