#!/usr/bin/env bash
# Renders the plain manifests under deploy/ from the Helm chart, so the
# chart is their one source: `make deploy` writes them, `make lint` checks
# that they are what the chart renders now (--check).
#
#   deploy/scaler/orgscaler.yaml          values: deploy/scaler/values.yaml
#   deploy/tls/orgscaler.yaml             values: deploy/scaler/values.yaml, deploy/tls/values.yaml
#   deploy/tls/cert-manager.yaml          the chart's Certificates and Issuers
#   deploy/tls/triggerauthentication.yaml the chart's ClusterTriggerAuthentication
#   deploy/scaledobjects/*.yaml           the chart's example ScaledObjects
#   deploy/knative/rbac.yaml              the chart's RBAC for --knative
#
# Helm's own labels (helm.sh/chart, managed-by: Helm) are left out: these
# files are applied with kubectl, not managed by a release.
set -euo pipefail
cd "$(dirname "$0")/.."
helm="${HELM:-bin/helm}"
chart=deploy/helm/orgscaler

check=false
[[ "${1:-}" == "--check" ]] && check=true
out=.
if $check; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi

# render FILE ARGS...: helm template orgscaler into FILE under $out.
render() {
  local file="$1"; shift
  mkdir -p "$out/$(dirname "$file")"
  {
    echo "# Rendered from deploy/helm/orgscaler by deploy/generate.sh (make deploy): edit the chart or"
    echo "# the values files, not this file."
    "$helm" template orgscaler "$chart" --namespace keda "$@" |
      grep -v -e '^ *helm\.sh/chart: ' -e '^ *app\.kubernetes\.io/managed-by: Helm$'
  } > "$out/$file"
}

render deploy/scaler/orgscaler.yaml -f deploy/scaler/values.yaml
render deploy/tls/orgscaler.yaml -f deploy/scaler/values.yaml -f deploy/tls/values.yaml
render deploy/tls/cert-manager.yaml -f deploy/scaler/values.yaml -f deploy/tls/values.yaml \
  --set tls.certManager.enabled=true --show-only templates/certificates.yaml
render deploy/tls/triggerauthentication.yaml -f deploy/scaler/values.yaml -f deploy/tls/values.yaml \
  --set tls.triggerAuthentication.create=true --show-only templates/triggerauthentication.yaml
render deploy/knative/rbac.yaml -f deploy/scaler/values.yaml --set knative.enabled=true \
  --show-only templates/knative-rbac.yaml
render deploy/scaledobjects/scaledobjects.yaml --set examples.enabled=true --show-only templates/examples.yaml
render deploy/scaledobjects/hybrid-scaledobjects.yaml --set examples.enabled=true,examples.layout=hybrid \
  --show-only templates/examples.yaml

if $check; then
  stale=0
  for f in $(cd "$out" && find . -type f | sort); do
    if ! cmp -s "$out/$f" "$f"; then
      echo "${f#./} is not what the chart renders now:"
      diff -u "$f" "$out/$f" | head -20 || true
      stale=1
    fi
  done
  if (( stale )); then
    echo "run make deploy and commit the result"
    exit 1
  fi
fi
