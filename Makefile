# eventkit: one Makefile for the library module (.), the app (./choicesherpa)
# and the benchmark suite (./bench). `make help` lists the targets.

MODULES      := . ./choicesherpa ./bench
GO           ?= go
TEST_TIMEOUT ?= 30m
TESTFLAGS    ?=
BENCHFLAGS   ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_/-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: test
test: fmt-check vet test/race ## everything CI runs: gofmt, vet, race-enabled unit + integration tests (needs Postgres and Redis; see README)

.PHONY: fmt-check
fmt-check: ## fail if any Go file is not gofmt'ed
	@out=$$(git ls-files '*.go' | grep -v /node_modules/ | xargs gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every module
	@set -e; for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && $(GO) vet ./...); done

.PHONY: test/race
test/race: ## go test -race every module (integration tests included)
	@set -e; for m in $(MODULES); do echo "== go test -race $$m"; (cd $$m && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) ./...); done

.PHONY: test/short
test/short: ## quick run: -short, no race detector
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) test -short -count=1 ./...); done

.PHONY: test/full
test/full: ## full-size reliability scenarios (slow)
	@$(MAKE) test/race EVENTKIT_FULL=1

.PHONY: lint
lint: fmt-check vet ## gofmt, vet, and staticcheck / golangci-lint when installed
	@if command -v golangci-lint >/dev/null; then for m in $(MODULES); do (cd $$m && golangci-lint run ./...); done; \
	elif command -v staticcheck >/dev/null; then for m in $(MODULES); do (cd $$m && staticcheck ./...); done; \
	else echo "lint: golangci-lint/staticcheck not installed; ran gofmt and vet only"; fi

.PHONY: bench
bench: ## the comparative benchmark suite, full size (prints one table of ratios)
	cd bench && $(GO) run ./cmd/benchsuite $(BENCHFLAGS)

.PHONY: bench/short
bench/short: ## the benchmark suite at CI size with loose floors
	cd bench && $(GO) run ./cmd/benchsuite -short $(BENCHFLAGS)

.PHONY: bench/go
bench/go: ## go test benchmarks with allocation counts
	@for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench . -benchmem ./...); done

.PHONY: quickstart
quickstart: ## run the quickstart example
	$(GO) run ./examples/quickstart

.PHONY: tidy
tidy: ## go mod tidy every module
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy); done
