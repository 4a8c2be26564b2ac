{{/* Chart name, overridable. */}}
{{- define "blocksight-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name: "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "blocksight-operator.fullname" -}}
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

{{/* Labels that select the operator pods; immutable once installed. */}}
{{- define "blocksight-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "blocksight-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "blocksight-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "blocksight-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: blocksight
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "blocksight-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "blocksight-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference; a digest pins the exact build and wins over the tag. */}}
{{- define "blocksight-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The headless metrics Service, and the host:port under which it reaches every replica. */}}
{{- define "blocksight-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "blocksight-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "blocksight-operator.metricsTarget" -}}
{{- printf "%s.%s.svc:%d" (include "blocksight-operator.metricsServiceName" .) .Release.Namespace (int .Values.metrics.port) }}
{{- end }}
