{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "pipeline-runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (a DNS label). A release name that
already contains the chart name is used as is. It names the Deployment.
*/}}
{{- define "pipeline-runner.fullname" -}}
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
ConfigMap holding params.json: "-params" after the fullname cut to 56 characters, so it
stays a 63-character DNS label.
*/}}
{{- define "pipeline-runner.paramsName" -}}
{{- printf "%s-params" (include "pipeline-runner.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "pipeline-runner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image tag that runs: image.tag, or the chart's appVersion when empty. It is also the
app.kubernetes.io/version label, so the label tells what actually runs even when the tag is
overridden (the schema keeps the tag a valid label value).
*/}}
{{- define "pipeline-runner.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Labels of every object. foundryflow.io/release is what the platform selects a release's
objects on; foundryflow.io/pipeline names the pipeline the pool runs (the schema keeps it a
valid label value). Neither is a selector label: selectors cannot change.
*/}}
{{- define "pipeline-runner.labels" -}}
helm.sh/chart: {{ include "pipeline-runner.chart" . }}
{{ include "pipeline-runner.selectorLabels" . }}
app.kubernetes.io/version: {{ include "pipeline-runner.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: pipeline-runner
app.kubernetes.io/part-of: foundryflow
foundryflow.io/release: {{ .Release.Name }}
foundryflow.io/pipeline: {{ .Values.pipeline }}
{{- end }}

{{/*
Selector labels: immutable once a Deployment exists, so only name and instance.
*/}}
{{- define "pipeline-runner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipeline-runner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "pipeline-runner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pipeline-runner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
params.json: the pipeline's parameters as JSON. Values are data: toJson never evaluates a
"{{ ... }}" inside them. Both the ConfigMap and the pods' checksum annotation use this, so
a parameter change (and only that, or a change of the pod template itself) rolls the pods.
*/}}
{{- define "pipeline-runner.paramsJson" -}}
{{- .Values.parameters | toJson }}
{{- end }}

{{/*
The file the runner touches before each execution and every few seconds while it waits for
the next (foundryflow.runtime.inline.work_loop), never during one; the probes read it.
*/}}
{{- define "pipeline-runner.heartbeatFile" -}}
/tmp/foundryflow-heartbeat
{{- end }}
