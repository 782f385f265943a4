#!/usr/bin/env bash
# What the chart refuses, and what it says: each case renders the chart with
# one bad value and expects helm to fail with the message a user would
# need. Run by `make lint`.
set -euo pipefail
cd "$(dirname "$0")"
helm="${HELM:-../../bin/helm}"

fails=0
# refuses 'VALUES' 'WHAT HELM MUST SAY'
refuses() {
  local out
  if out="$("$helm" template orgscaler orgscaler --namespace keda --set "$1" 2>&1 >/dev/null)"; then
    echo "FAIL: --set $1 rendered; want it refused with: $2"
    fails=1
  elif [[ "$out" != *"$2"* ]]; then
    echo "FAIL: --set $1 was refused with:"
    echo "$out"
    echo "want: $2"
    fails=1
  fi
}

refuses 'replicaCount=0' "at '/replicaCount': minimum: got 0, want 1"
refuses 'replicaCount=3' 'replicaCount is 3, but replicas without replication.enabled would each hold different orgs'
refuses 'replicaCount=3,replication.enabled=true' 'replication.enabled is true but replication.topic is empty'
refuses 'replication.topic=orgscaler-changes' "at '/replication/topic': 'orgscaler-changes' does not match pattern"
refuses 'replication.enabled=true,replication.topic=projects/p/topics/t,apiTokens.enabled=false,tls.enabled=true' 'replication.enabled needs apiTokens.enabled'
refuses 'apiTokens.enabled=false' 'the API would take calls from anyone'
refuses 'flags.idle-windows=1h' "at '/flags': additional properties 'idle-windows' not allowed"
refuses 'flags.listen=0.0.0.0:9090' "at '/flags': additional properties 'listen' not allowed"
refuses 'flags.idle-window=forever' "at '/flags/idle-window': 'forever' does not match pattern"
refuses 'flags.pubsub=embedded' "at '/flags/pubsub': value must be one of 'monitoring', 'none'"
refuses 'flags.activity-subscription=orgs' "at '/flags/activity-subscription': 'orgs' does not match pattern"
refuses 'ports.keda=70000' "at '/ports/keda': maximum: got 70,000, want 65,535"
refuses 'image.pullPolicy=Sometimes' "at '/image/pullPolicy': value must be one of"
refuses 'examples.layout=warm' "at '/examples/layout': value must be one of 'cold', 'hybrid'"
refuses 'metrics.serviceMonitor.enabled=true,metrics.service.enabled=false' 'metrics.serviceMonitor.enabled needs metrics.service.enabled'
refuses 'persistence.size=lots' "at '/persistence/size': 'lots' does not match pattern"
refuses 'tls.certManager.enabled=true' 'tls.certManager.enabled makes certificates for TLS, which is off'
refuses 'flags.min-free-disk-mb=-2' "at '/flags/min-free-disk-mb': minimum: got -2, want -1"
refuses 'tls.enable=true' "at '/tls': additional properties 'enable' not allowed"

exit $fails
