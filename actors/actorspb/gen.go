// Package actorspb holds the protobuf contracts of the grains: their stored
// records and the commands of the shard state machine. The Go code is
// generated and committed; regenerate with `go generate ./actors/actorspb`.
package actorspb

//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative actors/actorspb/records.proto
