{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "model-endpoint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (the DNS label limit of a Service
name). A release name that already contains the chart name is used as is.
*/}}
{{- define "model-endpoint.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "model-endpoint.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object. foundryflow.io/release is what endpoint discovery selects on:
the platform finds a release's endpoints among the Services carrying it.
*/}}
{{- define "model-endpoint.labels" -}}
helm.sh/chart: {{ include "model-endpoint.chart" . }}
{{ include "model-endpoint.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: inference-server
app.kubernetes.io/part-of: foundryflow
foundryflow.io/release: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels: immutable once a Deployment exists, so only name and instance.
*/}}
{{- define "model-endpoint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "model-endpoint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "model-endpoint.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "model-endpoint.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
