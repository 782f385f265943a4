#!/usr/bin/env bash
# Builds the e2e suite's control plane into a cache outside the repo:
# etcd, kube-apiserver and kubectl (from this directory's module) and KEDA's
# operator (from a writable copy of KEDA's module, so its own replace
# directives apply), and unpacks KEDA's CRDs, and the CRDs the chart's
# optional objects need (cert-manager's, prometheus-operator's
# ServiceMonitor) and Knative Serving's, from those projects' Go modules. A binary whose recorded
# version differs from the one pinned here is rebuilt; the rest are reused.
#
#   E2E_CACHE   where binaries go (default: ~/.cache/orgscaler-e2e)
#
# Cold, on 2 cores, this takes about half an hour; warm, seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${E2E_CACHE:-$HOME/.cache/orgscaler-e2e}"
bin="$cache/bin"
mkdir -p "$bin"

K8S_VERSION=v1.36.3
KEDA_VERSION=v2.21.0
CERT_MANAGER_VERSION=v1.21.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0
KNATIVE_SERVING_VERSION=v0.51.0   # Knative Serving 1.21
ETCD_VERSION="$(cd "$here" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"

# built NAME VERSION: true when $bin/NAME was built at VERSION.
built() { [[ -x "$bin/$1" && "$(cat "$bin/$1.version" 2>/dev/null)" == "$2" ]]; }
stamp() { echo "$2" > "$bin/$1.version"; }
log() { echo "e2e-tools: $*" >&2; }

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36"
for cmd in kube-apiserver kubectl; do
  if ! built "$cmd" "$K8S_VERSION"; then
    log "building $cmd $K8S_VERSION"
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    stamp "$cmd" "$K8S_VERSION"
  fi
done
if ! built etcd "$ETCD_VERSION"; then
  log "building etcd $ETCD_VERSION"
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
fi
if ! built keda-operator "$KEDA_VERSION" || [[ ! -d "$cache/keda-crds" ]]; then
  log "building KEDA's operator $KEDA_VERSION"
  dir="$(cd "$here" && GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  src="$cache/src/keda-$KEDA_VERSION"
  rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$dir" "$src" && chmod -R u+w "$src"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/keda-operator" ./cmd/operator)
  rm -rf "$cache/keda-crds" && cp -r "$src/config/crd/bases" "$cache/keda-crds"
  stamp keda-operator "$KEDA_VERSION"
fi
# crds NAME MODULE VERSION GLOB: MODULE's files matching GLOB, as CRDs in
# $cache/crds/NAME, from the module cache (nothing is built).
crds() {
  local dest="$cache/crds/$1"
  if [[ "$(cat "$dest/.version" 2>/dev/null)" == "$3 $4" ]]; then return; fi
  log "unpacking $1 CRDs $3"
  local dir
  dir="$(cd "$here" && GOFLAGS=-mod=mod go mod download -json "$2@$3" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  rm -rf "$dest" && mkdir -p "$dest"
  # shellcheck disable=SC2086 # GLOB is meant to expand
  cp $dir/$4 "$dest/"
  echo "$3 $4" > "$dest/.version"
}
crds cert-manager github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION" 'deploy/crds/cert-manager.io_*.yaml'
crds prometheus-operator github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" 'example/prometheus-operator-crd/monitoring.coreos.com_*.yaml'
crds knative knative.dev/serving "$KNATIVE_SERVING_VERSION" 'config/core/300-resources/*.yaml'
log "ready in $bin"
