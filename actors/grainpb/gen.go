// Package grainpb holds the grain contracts (grains.proto) and their
// generated code: messages (protoc-gen-go) and grain clients, kinds and
// actors (protoactor's protoc-gen-go-grain). Regenerate with
// `go generate ./actors/grainpb`.
package grainpb

//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative --go-grain_out=../.. --go-grain_opt=paths=source_relative actors/grainpb/grains.proto
