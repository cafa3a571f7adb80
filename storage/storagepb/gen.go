// Package storagepb holds the protobuf contracts of the records storage/
// keeps for itself. The Go code is generated and committed; regenerate with
// `go generate ./storage/storagepb` (protoc 3.21.12 from Debian's
// protobuf-compiler and protoc-gen-go v1.36.12, as .ci/run installs them).
package storagepb

//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative storage/storagepb/keyring.proto
