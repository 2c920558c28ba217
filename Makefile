# Physarum build, test and benchmark entry points. `make help` lists them.

GO       ?= go
BIN      := bin
# Every binary is built static (CGO_ENABLED=0): the same files run on the
# host and inside images built FROM scratch.
BINARIES := $(shell $(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./... 2>/dev/null | grep -v -e /testtask -e /testdata -e /demos/compose/)
TEST_TIMEOUT ?= 45m
FUZZTIME ?= 20s
STATICCHECK_VERSION ?= v0.8.2
GOLANGCI_VERSION ?= v2.15.0

.PHONY: help build test test-short lint fmt bench fuzz demo screenshot bench-dashboard clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build every binary into bin/ (static)
	@mkdir -p $(BIN)
	@if [ -n "$(BINARIES)" ]; then \
		echo "building $(words $(BINARIES)) binaries into $(BIN)/"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ $(BINARIES); \
	else echo "no binaries yet"; fi

test: build ## run every test with -race (what CI runs)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short: ## unit tests only, no -race (quick feedback)
	$(GO) test -short ./...

lint: ## gofmt, a tidy go.mod, go vet, then staticcheck and golangci-lint (.golangci.yml) when they install
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo "go mod tidy -diff"; if ! $(GO) mod tidy -diff >/dev/null; then \
		echo "go.mod or go.sum is not tidy; run go mod tidy. It would change:"; $(GO) mod tidy -diff; exit 1; fi
	$(GO) vet ./...
	@if $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -version >/dev/null 2>&1; then \
		echo "staticcheck ./..."; $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...; \
	else echo "staticcheck did not install from the module proxy; skipped"; fi
	@if $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION) version >/dev/null 2>&1; then \
		echo "golangci-lint run ./..."; $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION) run ./...; \
	else echo "golangci-lint did not install from the module proxy; skipped"; fi

fmt: ## format the tree
	gofmt -w $$(git ls-files '*.go')

bench: build ## Go benchmarks, then the whole-system suite (BENCH_FLAGS=-quick: short run); results in demos/bench/results
	@mkdir -p demos/bench/results
	@st=0; bt='$(or $(BENCHTIME),10x)'; \
	echo "go test -bench . -benchtime $$bt ./proxy/forward/ ./common/rtt/ (output also in demos/bench/results/go-bench.txt)"; \
	{ $(GO) test -run '^$$' -bench . -benchtime $$bt ./proxy/forward/ ./common/rtt/ 2>&1; echo $$? >demos/bench/results/.go-bench.rc; } \
		| tee demos/bench/results/go-bench.txt; \
	if [ "$$(cat demos/bench/results/.go-bench.rc)" != 0 ]; then st=1; echo "Go benchmarks failed; running the suite anyway"; fi; \
	rm -f demos/bench/results/.go-bench.rc; \
	echo "$(BIN)/bench -bin $(BIN) -services demos/services -out demos/bench/results $(BENCH_FLAGS)"; \
	$(BIN)/bench -bin $(BIN) -services demos/services -out demos/bench/results $(BENCH_FLAGS) || st=1; \
	exit $$st

fuzz: ## run each fuzz target for FUZZTIME (corpus growth stays local)
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

demo: build ## run a private network on this machine and show it working (DEMO_ONESHOT=1: report and exit)
	@$(BIN)/demo -bin $(BIN) -services demos/services

screenshot: build ## the dashboard at 1280x800 on a demo-like network (6 allocators on 3 sites), into docs/dashboard.png
	$(GO) run ./demos/dashboard -bin $(BIN) -screenshot docs/dashboard.png

bench-dashboard: build ## the dashboard's first paint, complete page and weight at 10 and 100 nodes, in headless Chromium
	$(GO) run ./demos/dashboard -bin $(BIN) -measure 10,100

clean: ## remove build output
	rm -rf $(BIN)
