# The two commands of README.md: `make demo` and `make test`.
GO ?= go
# Packages with goroutines of their own run under the race detector; every
# other package runs without it (a new package is tested either way).
RACE_PKGS = . ./local/... ./internal/dirtar/... ./internal/framed/... ./internal/core/... ./internal/manager/... ./internal/worker/... ./internal/runner/... ./internal/inproc/... \
	./internal/gate/... ./internal/journal/... ./internal/web/... ./internal/metrics/... ./internal/txnlog/... ./internal/factory/...
OTHER_PKGS = $(filter-out $(shell $(GO) list $(RACE_PKGS)),$(shell $(GO) list ./...))

.PHONY: build demo test vet bench proto

build:
	$(GO) build -o bin/trellis ./cmd/trellis

demo: build
	./bin/trellis run examples/wordcount/wordcount.yaml
	./bin/trellis run examples/dataflow/dataflow.yaml
	$(GO) run ./examples/hello
	./bin/trellis run examples/python/features.yaml
	$(GO) run ./examples/ml/pipeline
	python3 examples/ml-python/pipeline.py --binary bin/trellis

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags kubernetes ./internal/factory/... ./cmd/trellis

# The end-to-end tests build the trellis binary themselves, which the test
# cache cannot see (a cached pass could be of other code): -count=1.
test: vet build
	$(GO) test -race -short $(RACE_PKGS)
	$(GO) test -tags kubernetes -run Kube ./internal/factory/...
	$(GO) test $(filter-out trellis/internal/e2e,$(OTHER_PKGS))
	$(GO) test -count=1 ./internal/e2e
	python3 -m unittest discover -s sdk/python

bench: build
	./bin/trellis bench core
	./bin/trellis bench tasks --tasks 2000 --workers 2
	./bin/trellis bench dag --workers 2

# Regenerate the wire code (needs protoc, protoc-gen-go, protoc-gen-connect-go).
proto:
	cd internal/proto && $(GO) generate ./...
