{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "agent-runtime.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (the DNS label limit of a Service
name). A release name that already contains the chart name is used as is.
*/}}
{{- define "agent-runtime.fullname" -}}
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
{{- define "agent-runtime.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image tag that runs: image.tag, or the chart's appVersion when empty. It is also the
app.kubernetes.io/version label, so the label tells what actually runs even when the tag is
overridden (the schema keeps the tag a valid label value).
*/}}
{{- define "agent-runtime.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Labels of every object. foundryflow.io/release is what endpoint discovery selects on:
the platform finds a release's endpoints among the Services carrying it.
*/}}
{{- define "agent-runtime.labels" -}}
helm.sh/chart: {{ include "agent-runtime.chart" . }}
{{ include "agent-runtime.selectorLabels" . }}
app.kubernetes.io/version: {{ include "agent-runtime.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: foundryflow
foundryflow.io/release: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels: immutable once a Deployment exists, so only name and instance.
*/}}
{{- define "agent-runtime.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agent-runtime.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "agent-runtime.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agent-runtime.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Environment variables carrying the backend endpoints, name -> value key. An empty value
sets no variable: "not configured" reaches the application as an absent variable, which
settings libraries read as "unset" rather than failing to parse "" as a URL.
*/}}
{{- define "agent-runtime.endpointEnv" -}}
{{- $endpoints := list
  (list "LLM_ENDPOINT" .Values.llmEndpoint)
  (list "VECTORDB_ENDPOINT" .Values.vectordbEndpoint)
  (list "EMBEDDER_ENDPOINT" .Values.embedderEndpoint)
  (list "RERANKER_ENDPOINT" .Values.rerankerEndpoint)
  (list "MEMORY_ENDPOINT" .Values.memoryEndpoint) }}
{{- range $endpoints }}
{{- if index . 1 }}
- name: {{ index . 0 }}
  value: {{ index . 1 | quote }}
{{- end }}
{{- end }}
{{- end }}
