{{/* The chart's name, or nameOverride. */}}
{{- define "orgscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Names of the release's objects: the release's name when it already holds
the chart's (`helm install orgscaler` gives orgscaler, orgscaler-api, ...),
else RELEASE-orgscaler. 52 characters at most: a StatefulSet's pods carry a
controller-revision-hash label built from its name.
*/}}
{{- define "orgscaler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "orgscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orgscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "orgscaler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "orgscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keda
{{- end -}}

{{- define "orgscaler.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Secret names, defaulting to the ones the cert-manager Certificates write. */}}
{{- define "orgscaler.tokensSecret" -}}
{{- .Values.apiTokens.existingSecret | default (printf "%s-api-tokens" (include "orgscaler.fullname" .)) -}}
{{- end -}}
{{- define "orgscaler.serverSecret" -}}
{{- .Values.tls.secrets.server | default (printf "%s-tls" (include "orgscaler.fullname" .)) -}}
{{- end -}}
{{- define "orgscaler.kedaClientSecret" -}}
{{- .Values.tls.secrets.kedaClient | default (printf "keda-%s-client" (include "orgscaler.fullname" .)) -}}
{{- end -}}
{{- define "orgscaler.apiClientCASecret" -}}
{{- .Values.tls.secrets.apiClientCA | default (printf "%s-admin" (include "orgscaler.fullname" .)) -}}
{{- end -}}
{{- define "orgscaler.triggerAuthentication" -}}
{{- .Values.tls.triggerAuthentication.name | default (printf "%s-mtls" (include "orgscaler.fullname" .)) -}}
{{- end -}}

{{/* KEDA's address for the scaler: the headless Service, every replica. */}}
{{- define "orgscaler.kedaHost" -}}
{{ include "orgscaler.fullname" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}

{{/* The replicas' address for each other's APIs (--peers). */}}
{{- define "orgscaler.peersHost" -}}
{{ include "orgscaler.fullname" . }}-peers.{{ .Release.Namespace }}.svc
{{- end -}}

{{/*
The names the scaler's certificate must hold, one YAML list item a line:
what KEDA's scalerAddress, producers and the other replicas dial.
*/}}
{{- define "orgscaler.dnsNames" -}}
{{- $fullname := include "orgscaler.fullname" . -}}
{{- $ns := .Release.Namespace -}}
- {{ include "orgscaler.kedaHost" . }}
- {{ $fullname }}.{{ $ns }}.svc
- {{ $fullname }}.{{ $ns }}
- "*.{{ include "orgscaler.kedaHost" . }}"
- {{ $fullname }}-api.{{ $ns }}.svc.{{ .Values.clusterDomain }}
- {{ $fullname }}-api.{{ $ns }}.svc
- {{ $fullname }}-api.{{ $ns }}
- {{ include "orgscaler.peersHost" . }}
{{- range .Values.tls.certManager.extraDnsNames }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
What no values file can get past: combinations the scaler itself refuses
to start with, said here in the values' own names.
*/}}
{{- define "orgscaler.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.replication.enabled) -}}
{{- fail (printf "replicaCount is %d, but replicas without replication.enabled would each hold different orgs: set replication.enabled=true and replication.topic (docs/REPLICATION.md)" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.replication.enabled (not .Values.replication.topic) -}}
{{- fail "replication.enabled is true but replication.topic is empty: give the topic every replica publishes to, projects/PROJECT/topics/TOPIC" -}}
{{- end -}}
{{- if and .Values.replication.enabled (not .Values.apiTokens.enabled) -}}
{{- fail "replication.enabled needs apiTokens.enabled: replicas present the peer-token of the tokens Secret to each other for snapshots" -}}
{{- end -}}
{{- if not (or .Values.apiTokens.enabled (and .Values.tls.enabled .Values.tls.apiClientCertificates)) -}}
{{- fail "the API would take calls from anyone: keep apiTokens.enabled, or set tls.enabled with tls.apiClientCertificates" -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) -}}
{{- fail "tls.certManager.enabled makes certificates for TLS, which is off: set tls.enabled=true as well" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes that Service" -}}
{{- end -}}
{{- end -}}

{{/* The head of an example trigger, up to its metadata's first key. */}}
{{- define "orgscaler.exampleTrigger" -}}
- type: external-push
  {{- if .tls }}
  authenticationRef: {name: {{ .auth }}, kind: ClusterTriggerAuthentication}
  {{- end }}
  metadata:
    scalerAddress: {{ .address }}
    {{- if .tls }}
    enableTLS: "true"
    {{- end }}
{{- end -}}
