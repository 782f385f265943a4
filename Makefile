# Pinned tool versions: `make tools` installs them into ./bin.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
STATICCHECK_VERSION        := v0.8.2
GOIMPORTS_VERSION          := v0.52.0
GOTESTSUM_VERSION          := v1.13.0
HELM_VERSION               := v3.22.0
# promtool, from Prometheus v3's Go module (its v0.3xx versions).
PROMETHEUS_VERSION         := v0.316.0
CYCLONEDX_GOMOD_VERSION    := v1.10.0
# The Kubernetes version `helm lint` and `helm template` render for (helm's
# own release build sets it from its client-go; go install does not).
HELM_KUBE_MINOR            := 37

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# What `scaler --version` and orgscaler_build_info say: the tag (or commit)
# this checkout is at, and its commit. A release sets VERSION to its tag.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -s -w -X github.com/orgscaler/orgscaler/version.Version=$(VERSION) -X github.com/orgscaler/orgscaler/version.Revision=$(REVISION)

.PHONY: run test build check lint chart-lint alerts-lint deploy proto tools image release-dry-run e2e clean fuzz bench

## run: the scaler on the embedded default (Badger under ./data, loopback
## ports, embedded Pub/Sub on 127.0.0.1:8085); with SCALER_GCP_PROJECT set,
## backlog comes from Cloud Monitoring instead
run:
	go build -o $(BIN)/scaler ./cmd/scaler
	exec $(BIN)/scaler --data-dir ./data --pubsub=$(if $(SCALER_GCP_PROJECT),monitoring,embedded)

## test: every test, with the race detector, and each benchmark once at a
## small size (so they keep working); the summary says how many tests were
## skipped and why (gotestsum, pinned, installed into ./bin)
test: $(BIN)/gotestsum
	$(BIN)/gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg -- -race -count=1 ./...
	go test -count=1 -short -run='^$$' -bench=. -benchtime=1x ./bench

## bench: the benchmarks at full size (about 5 minutes), their figures
## written into docs/BENCHMARKS.md
BENCHES := KEDAPort|Isolation|Ingest|MillionOrgs|Import|Wake|MonitoringCalls|Replicas|KeepAlive|Faults|Pools
bench:
	@mkdir -p $(BIN)
	go test -count=1 -run='^$$' -bench='^Benchmark($(BENCHES))$$' -benchtime=1x -timeout=30m ./bench | tee $(BIN)/bench.txt
	go run ./bench/benchdoc -in $(BIN)/bench.txt -doc docs/BENCHMARKS.md

## fuzz: each fuzz target for FUZZTIME (default 30s); `make test` runs
## their seed corpora. A crash leaves its input in PKG/testdata/fuzz.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./trigger:FuzzParseMetadata ./orgid:FuzzValidOrg ./pubsubdepth:FuzzNewestPoint ./api:FuzzAPIMessages
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		go test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) $${t%%:*}; \
	done

## build: both binaries into ./bin, stamped with VERSION
build:
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/scaler ./cmd/scaler
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/scalerctl ./cmd/scalerctl

## check: lint, then every test
check: lint test

## lint: gofmt/goimports, go vet, staticcheck, go.mod tidy, the chart and
## its alerts
lint: $(BIN)/staticcheck $(BIN)/goimports chart-lint alerts-lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	@test -z "$$($(BIN)/goimports -l -local github.com/orgscaler/orgscaler $$(git ls-files '*.go' | grep -v -e '\.pb\.go$$' -e '\.connect\.go$$'))" || { $(BIN)/goimports -l -local github.com/orgscaler/orgscaler $$(git ls-files '*.go' | grep -v -e '\.pb\.go$$' -e '\.connect\.go$$'); echo "goimports: files above need formatting (generated code is left as generated)"; exit 1; }
	go vet ./...
	go vet -tags e2e ./e2e
	$(BIN)/staticcheck ./...
	$(BIN)/staticcheck -tags e2e ./e2e
	@cp go.mod $(BIN)/go.mod.before && cp go.sum $(BIN)/go.sum.before
	go mod tidy
	@cmp -s go.mod $(BIN)/go.mod.before && cmp -s go.sum $(BIN)/go.sum.before || { \
		echo "go.mod/go.sum were not tidy: go mod tidy changed them; commit the result"; exit 1; }

## chart-lint: helm lint and helm template of the chart with its defaults
## and with every option on, the values it must refuse, and the plain
## manifests under deploy/ checked against what the chart renders
CHART := deploy/helm/orgscaler
chart-lint: $(BIN)/helm
	$(BIN)/helm lint --strict $(CHART)
	$(BIN)/helm lint --strict $(CHART) -f $(CHART)/ci/full-values.yaml
	$(BIN)/helm template orgscaler $(CHART) --namespace keda > /dev/null
	$(BIN)/helm template orgscaler $(CHART) --namespace keda -f $(CHART)/ci/full-values.yaml > /dev/null
	$(BIN)/helm template orgscaler $(CHART) --namespace keda --set metrics.podMonitoring.enabled=true --show-only templates/podmonitoring.yaml > /dev/null
	HELM=$(BIN)/helm bash deploy/helm/refuses.sh
	HELM=$(BIN)/helm bash deploy/generate.sh --check

## alerts-lint: the shipped alerts are valid, and each fires on what it is
## for and on nothing else (promtool, pinned, installed into ./bin)
ALERTS := $(CHART)/alerts
alerts-lint: $(BIN)/promtool
	$(BIN)/promtool check rules $(ALERTS)/orgscaler.rules.yaml
	cd $(ALERTS) && $(BIN)/promtool test rules orgscaler.rules_test.yaml

## deploy: render the plain manifests under deploy/ from the chart
deploy: $(BIN)/helm
	HELM=$(BIN)/helm bash deploy/generate.sh

## proto: regenerate proto/ with the pinned buf and plugins
proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-connect-go
	$(BIN)/buf lint
	$(BIN)/buf generate

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-connect-go $(BIN)/staticcheck $(BIN)/goimports $(BIN)/gotestsum $(BIN)/helm $(BIN)/promtool

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/protoc-gen-connect-go:
	GOBIN=$(BIN) go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)
$(BIN)/staticcheck:
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(BIN)/goimports:
	GOBIN=$(BIN) go install golang.org/x/tools/cmd/goimports@$(GOIMPORTS_VERSION)
$(BIN)/gotestsum:
	GOBIN=$(BIN) go install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)
$(BIN)/promtool:
	GOBIN=$(BIN) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)
$(BIN)/cyclonedx-gomod:
	GOBIN=$(BIN) go install github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_GOMOD_VERSION)
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach p,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=$(HELM_KUBE_MINOR))
$(BIN)/helm:
	GOBIN=$(BIN) go install -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

## e2e: the end-to-end suite on a real kube-apiserver and KEDA's own operator,
## built into $(E2E_CACHE) first (about 30 minutes cold on 2 cores; warm, seconds)
E2E_CACHE ?= $(HOME)/.cache/orgscaler-e2e
e2e: $(BIN)/helm
	E2E_CACHE=$(E2E_CACHE) bash e2e/tools/build.sh
	E2E_CACHE=$(E2E_CACHE) HELM=$(BIN)/helm E2E_FIGURES=$(BIN)/e2e-figures.txt go test -tags e2e -count=1 -v -timeout 30m ./e2e

## image: the multi-arch (amd64, arm64) OCI image of both binaries, built
## with go-containerregistry (no container engine, no base image pulled),
## as an OCI image layout in bin/image (push it with crane or skopeo)
PLATFORMS ?= linux/amd64,linux/arm64
image:
	go run ./build/image -out $(BIN)/image -version $(VERSION) -revision $(REVISION) -platforms $(PLATFORMS)

## release-dry-run: every artifact a release pushes, into bin/release: the
## image layout, the chart package, scalerctl for each platform, the SBOM.
## With VERSION=vX.Y.Z it also checks the chart and the CHANGELOG name it.
RELEASE := $(BIN)/release
CHART_VERSION = $(if $(filter v%,$(VERSION)),$(patsubst v%,%,$(VERSION)),0.0.0-$(VERSION))
release-dry-run: $(BIN)/helm $(BIN)/cyclonedx-gomod
	rm -rf $(RELEASE) && mkdir -p $(RELEASE)
	@if echo '$(VERSION)' | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+$$'; then bash build/release-check.sh '$(VERSION)'; \
	else echo "VERSION=$(VERSION) is no release tag: the chart and CHANGELOG checks are skipped"; fi
	go run ./build/image -out $(RELEASE)/image -version $(VERSION) -revision $(REVISION) -platforms $(PLATFORMS)
	set -e; for p in $$(echo $(PLATFORMS) | tr , ' '); do \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} go build -trimpath -ldflags '$(LDFLAGS)' -o $(RELEASE)/scalerctl-$${p%/*}-$${p#*/} ./cmd/scalerctl; \
	done
	$(BIN)/helm package $(CHART) --version $(CHART_VERSION) --app-version $(VERSION) -d $(RELEASE)
	$(BIN)/cyclonedx-gomod app -json -licenses=false -main cmd/scaler -output $(RELEASE)/orgscaler-$(VERSION).cdx.json .
	cd $(RELEASE) && sha256sum scalerctl-* *.tgz *.cdx.json > SHA256SUMS
	@ls -l $(RELEASE)

clean:
	rm -rf $(BIN)
