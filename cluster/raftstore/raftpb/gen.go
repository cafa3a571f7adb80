// Package raftpb holds the protobuf contracts of the records
// cluster/raftstore keeps in Pebble. The Go code is generated and committed;
// regenerate with `go generate ./cluster/raftstore/raftpb` (protoc 3.21.12
// and protoc-gen-go v1.36.12, as `make tools` installs them).
package raftpb

//go:generate protoc -I ../../.. --go_out=../../.. --go_opt=paths=source_relative cluster/raftstore/raftpb/raft.proto
