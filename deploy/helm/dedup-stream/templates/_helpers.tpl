{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "dedup-stream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "dedup-stream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dedup-stream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (app.kubernetes.io/*) on every object. */}}
{{- define "dedup-stream.labels" -}}
helm.sh/chart: {{ include "dedup-stream.chart" . }}
{{ include "dedup-stream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: consumer
app.kubernetes.io/part-of: dedup-stream
{{- end }}

{{/* Selector labels: stable across upgrades, so never the version. */}}
{{- define "dedup-stream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dedup-stream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dedup-stream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dedup-stream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: the CUDA variant (tag suffix) when gpu.enabled. */}}
{{- define "dedup-stream.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.gpu.enabled }}{{ $tag = printf "%s%s" $tag .Values.gpu.imageTagSuffix }}{{ end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* Where the Kafka TLS secret is mounted. */}}
{{- define "dedup-stream.kafkaTlsDir" -}}/etc/dedup/kafka-tls{{- end }}

{{/*
Render-time guards the schema cannot express. A replica beyond the partition count gets no partition: it is
alive, never ready, and holds a pod's resources for nothing (and blocks rollouts and disruption budgets).
*/}}
{{- define "dedup-stream.validate" -}}
{{- $p := int .Values.kafka.partitions }}
{{- if and .Values.keda.enabled .Values.hpa.enabled }}
{{- fail "keda.enabled and hpa.enabled are exclusive: two autoscalers would fight over replicas" }}
{{- end }}
{{- if gt (int .Values.replicaCount) $p }}
{{- fail (printf "replicaCount (%d) > kafka.partitions (%d): a consumer without partitions never becomes ready" (int .Values.replicaCount) $p) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicaCount) $p) }}
{{- fail (printf "keda.maxReplicaCount (%d) > kafka.partitions (%d)" (int .Values.keda.maxReplicaCount) $p) }}
{{- end }}
{{- if and .Values.hpa.enabled (gt (int .Values.hpa.maxReplicas) $p) }}
{{- fail (printf "hpa.maxReplicas (%d) > kafka.partitions (%d)" (int .Values.hpa.maxReplicas) $p) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- fail "keda.minReplicaCount > keda.maxReplicaCount" }}
{{- end }}
{{- if and .Values.hpa.enabled (gt (int .Values.hpa.minReplicas) (int .Values.hpa.maxReplicas)) }}
{{- fail "hpa.minReplicas > hpa.maxReplicas" }}
{{- end }}
{{- $proto := upper .Values.kafka.securityProtocol }}
{{- if and .Values.kafka.sasl.existingSecret (not (has $proto (list "SASL_SSL" "SASL_PLAINTEXT"))) }}
{{- fail "kafka.sasl.existingSecret is set: set kafka.securityProtocol to SASL_SSL (or SASL_PLAINTEXT) and kafka.saslMechanism" }}
{{- end }}
{{- if and .Values.kafka.tls.existingSecret (not (has $proto (list "SSL" "SASL_SSL"))) }}
{{- fail "kafka.tls.existingSecret is set: set kafka.securityProtocol to SSL or SASL_SSL" }}
{{- end }}
{{- if and .Values.kafka.tls.existingSecret (ne (empty .Values.kafka.tls.certKey) (empty .Values.kafka.tls.keyKey)) }}
{{- fail "kafka.tls: set both certKey and keyKey (mutual TLS) or neither" }}
{{- end }}
{{- if and (eq .Values.snapshots.type "persistentVolumeClaim") (has "ReadWriteOnce" .Values.snapshots.accessModes) }}
{{- $max := .Values.replicaCount }}
{{- if .Values.keda.enabled }}{{ $max = .Values.keda.maxReplicaCount }}{{ end }}
{{- if .Values.hpa.enabled }}{{ $max = .Values.hpa.maxReplicas }}{{ end }}
{{- if gt (int $max) 1 }}
{{- fail "snapshots: a ReadWriteOnce claim is shared by every replica; use ReadWriteMany, emptyDir or one replica" }}
{{- end }}
{{- end }}
{{- if and .Values.service.api (eq .Values.api.auth "tokens") (not .Values.api.tokens.existingSecret) }}
{{- fail "service.api is on and api.auth is tokens: set api.tokens.existingSecret (a Secret holding a tokens file, docs/security.md) or api.auth: off" }}
{{- end }}
{{- if and .Values.api.managementPort (eq (int .Values.api.managementPort) (int .Values.service.httpPort)) }}
{{- fail "api.managementPort equals service.httpPort: use another port, or 0 to serve everything on httpPort" }}
{{- end }}
{{- if eq .Values.index.backend "milvus" }}
{{- with .Values.index.milvus }}
{{- if and .tls.existingSecret (not (include "dedup-stream.milvusTls" $)) }}
{{- fail "index.milvus.tls.existingSecret is set: set index.milvus.tls.enabled (or an https:// index.milvus.uri)" }}
{{- end }}
{{- if and (not .uri) (not .host) }}
{{- fail "index.backend is milvus: set index.milvus.uri or index.milvus.host" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Whether Milvus is reached over TLS: index.milvus.tls.enabled or an https:// uri ("true" or empty). */}}
{{- define "dedup-stream.milvusTls" -}}
{{- if or .Values.index.milvus.tls.enabled (hasPrefix "https://" .Values.index.milvus.uri) }}true{{ end }}
{{- end }}

{{/* Where the Milvus CA Secret is mounted. */}}
{{- define "dedup-stream.milvusTlsDir" -}}/etc/dedup/milvus-tls{{- end }}

{{/*
One environment value as consumer/config.py reads it: lists comma-joined; whole numbers without an exponent
(YAML numbers reach templates as float64, and 1000000 would otherwise print as 1e+06, which no int parses).
*/}}
{{- define "dedup-stream.envValue" -}}
{{- if kindIs "slice" . }}{{ join "," . }}
{{- else if kindIs "map" . }}{{ $pairs := list }}{{ range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%v" $k $v) }}{{ end }}{{ join "," $pairs }}
{{- else if and (kindIs "float64" .) (eq (floor .) .) }}{{ int64 . }}
{{- else }}{{ toString . }}{{ end }}
{{- end }}

{{/*
The Redis URL the pod gets: redis.url, or, when redis.clusterNodes lists seed nodes, a Redis Cluster URL
(redis+cluster://h1:p1,h2:p2; rediss+cluster:// when redis.url is rediss://). One setting either way
(DEDUP_SERVICE__REDIS); docs/scale-out.md, "Redis Cluster".
*/}}
{{- define "dedup-stream.redisUrl" -}}
{{- if .Values.redis.clusterNodes -}}
{{- if hasPrefix "rediss://" .Values.redis.url }}rediss{{ else }}redis{{ end }}+cluster://{{ join "," .Values.redis.clusterNodes }}
{{- else -}}
{{ .Values.redis.url }}
{{- end -}}
{{- end }}
