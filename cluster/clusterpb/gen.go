// Package clusterpb holds the messages nodes exchange about the cluster
// itself. Regenerate with go generate (protoc and protoc-gen-go of the
// versions the Makefile names).
package clusterpb

//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative cluster/clusterpb/cluster.proto
