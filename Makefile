# fedmesh: a Kubernetes aggregated API server for multi-cluster service federation.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

BIN := _output/bin
GO_PACKAGES := ./...
# Integration tests start real etcd and kube-apiservers; give them room.
TEST_TIMEOUT ?= 25m

.PHONY: all build test unit race fuzz verify codegen test-binaries run local-up bench chaos clean

all: build

## build: compile fedmesh's binaries into _output/bin
build:
	go build -o $(BIN)/ ./cmd/...

## test-binaries: build the pinned kube-apiserver, kubectl and etcd the tests run
test-binaries:
	hack/install-test-binaries.sh

## test: verify, the race detector, each fuzz target briefly, then every test (unit and integration) on real servers
test: verify test-binaries build race fuzz
	go test -count=1 -timeout $(TEST_TIMEOUT) $(GO_PACKAGES)

## unit: run the tests quickly, without the checks of verify
unit:
	go test -short -count=1 $(GO_PACKAGES)

# The packages whose code runs concurrently: watches, queues, informers.
RACE_PACKAGES := ./pkg/registry/... ./pkg/clusterset/... ./pkg/syncer/... ./pkg/admission/... ./pkg/protection/...

## race: the unit tests of the concurrent packages under the race detector
race:
	go test -race -short -count=1 $(RACE_PACKAGES)

## fuzz: run each Go fuzz target (func FuzzX) for FUZZ_TIME, one at a time (hack/fuzz.sh)
FUZZ_TIME ?= 5s
fuzz:
	FUZZ_TIME=$(FUZZ_TIME) hack/fuzz.sh

## verify: gofmt, go vet and generated-code freshness
verify:
	@bad=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^generated/') 2>/dev/null); \
	  if [ -n "$$bad" ]; then echo "gofmt needed on:"; echo "$$bad"; exit 1; fi
	go vet $(GO_PACKAGES)
	hack/verify-codegen.sh

## codegen: regenerate deepcopy, defaulters, conversions, OpenAPI and clients
codegen:
	hack/update-codegen.sh

## run: start fedmesh-apiserver standalone with an embedded etcd (dev only)
run: build
	hack/run-standalone.sh

## local-up: etcd, a control plane and cluster-1..3 on loopback, with fedmesh-apiserver registered
# A development tool, not one of fedmesh's commands: it is built beside
# _output/bin, and run directly rather than by "go run", so that a signal
# sent to it (SIGTERM as well as Ctrl-C's SIGINT) stops what it started.
local-up: build test-binaries
	go build -o _output/tools/local-up ./hack/local-up
	_output/tools/local-up

## demo: replay the Flomesh walkthrough against a running local-up (both as root), curl results beside the walkthrough's
demo: test-binaries
	go build -o _output/tools/demo ./hack/demo
	_output/tools/demo

## bench: measure fedmesh next to kube-apiserver on a real federation (N=8 members, M=10000 exports), then fedmesh-gateway
BENCH_MEMBERS ?= 8
BENCH_EXPORTS ?= 10000
bench: build test-binaries
	go test -count=1 -timeout 60m -v -run TestBench ./test/bench -args \
	  -members=$(BENCH_MEMBERS) -exports=$(BENCH_EXPORTS) -list-runs=20 -watch-samples=200 -ready-samples=20 -heap-profile -cpu-profiles \
	  -gateway-latency-samples=2000 -gateway-rps-seconds=5 -gateway-rps-clients=8 -gateway-failover-trials=10 -gateway-profile

## chaos: the fault suite, full configuration, on real processes; writes _output/chaos/results.json
# make test runs its small configuration (results-small.json).
chaos: build test-binaries
	go test -count=1 -timeout 40m -v ./test/chaos -args -full

clean:
	rm -rf _output
