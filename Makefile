# The project's commands. `make test` is what CI runs (.ci/run): on a fresh
# machine it first installs what the checks need.

SHELL := /bin/bash
GOBIN := $(shell go env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

# Versions the committed generated code was made with; the generation check
# needs the same ones to reproduce it byte for byte.
PROTOC_VERSION := 3.21.12
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GRAIN_VERSION := v0.0.0-20240822202345-3c0e61ca19c9

.PHONY: test tools build vet fmt-check generate-check unit bench run

## test: everything CI checks: build, formatting, vet, generated code, tests
test: tools build fmt-check vet generate-check unit

## tools: install protoc, protoc-gen-go, protoc-gen-go-grain and chromium (browser tests) when missing (Debian's packages, the Go module proxy)
tools:
	@if ! test -x /usr/bin/chromium; then \
		echo "installing chromium (Debian) for the browser tests"; \
		apt-get -o DPkg::Lock::Timeout=600 update -qq && \
		apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null; \
	fi
	@if ! protoc --version 2>/dev/null | grep -q "$(PROTOC_VERSION)"; then \
		echo "installing protobuf-compiler $(PROTOC_VERSION)"; \
		apt-get -o DPkg::Lock::Timeout=600 update -qq && \
		apt-get -o DPkg::Lock::Timeout=600 install -y -qq protobuf-compiler >/dev/null; \
	fi
	@protoc --version | grep -q "$(PROTOC_VERSION)" || { echo "protoc $(PROTOC_VERSION) required, found $$(protoc --version)"; exit 1; }
	@if ! protoc-gen-go --version 2>/dev/null | grep -q "$(PROTOC_GEN_GO_VERSION)"; then \
		echo "installing protoc-gen-go $(PROTOC_GEN_GO_VERSION)"; \
		go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION); \
	fi
	@if ! go version -m $(GOBIN)/protoc-gen-go-grain 2>/dev/null | grep -q "$(PROTOC_GEN_GRAIN_VERSION)"; then \
		echo "installing protoc-gen-go-grain $(PROTOC_GEN_GRAIN_VERSION)"; \
		go install github.com/asynkron/protoactor-go/protobuf/protoc-gen-go-grain@$(PROTOC_GEN_GRAIN_VERSION); \
	fi

build:
	go build ./...

vet:
	go vet ./...
	cd bench/compare && go vet ./...  # its own module: the Centrifugo comparison

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## generate-check: regenerating the protobuf code must change nothing
generate-check: tools
	@before=$$(find . -name '*.pb.go' -not -path './node_modules/*' | sort | xargs sha256sum); \
	go generate ./... || exit 1; \
	after=$$(find . -name '*.pb.go' -not -path './node_modules/*' | sort | xargs sha256sum); \
	if [ "$$before" != "$$after" ]; then \
		echo "generated code is out of date; run 'go generate ./...' and commit:"; \
		diff <(echo "$$before") <(echo "$$after"); exit 1; \
	fi; echo "generated code is up to date"

## unit: the test suite (add SHORT=1 to skip the slow process and cluster tests)
# Packages that start several protoactor nodes in one process run without the
# race detector: protoactor's remote sets gRPC's process-global logger on
# every start (grpclog.SetLoggerV2), which races with the gRPC servers of the
# nodes already running. Everything else runs with it.
RACE_FREE := ./cluster ./actors/grains/... ./actors/retention
unit:
	go test -race -timeout 15m $(if $(SHORT),-short) $$(go list ./... | grep -v -e '/cluster$$' -e /actors/grains -e /actors/retention)
	go test -timeout 15m $(if $(SHORT),-short) $(RACE_FREE)
	cd bench/compare && go test -short ./...  # without Centrifugo installed, its driver's pure parts

## bench: the benchmarks of bench/, interleaved rounds, summarised by benchstat
bench:
	bench/run.sh

## run: a single node on embedded defaults
run:
	go run ./cmd/chatpacket serve
