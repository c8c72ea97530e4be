{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "foundryflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (a DNS label). A release name that
already contains the chart name is used as is. It names the PrometheusRule and the
ServiceMonitor; the migration Job appends "-migrate".
*/}}
{{- define "foundryflow.fullname" -}}
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
The migration Job: "-migrate" after the fullname cut to 55 characters, so it stays a
63-character DNS label.
*/}}
{{- define "foundryflow.migrationName" -}}
{{- printf "%s-migrate" (include "foundryflow.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "foundryflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image tag that runs: image.tag, or the chart's appVersion when empty. It is also the
app.kubernetes.io/version label (the schema keeps the tag a valid label value).
*/}}
{{- define "foundryflow.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The image of the migration Job and of every Argo workflow pod.
*/}}
{{- define "foundryflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "foundryflow.imageTag" .) }}
{{- end }}

{{/*
The Secret with the keys database-url and redis-url: runtime.existingSecret, else the one
the chart creates under the name the rendered Argo documents use.
*/}}
{{- define "foundryflow.runtimeSecretName" -}}
{{- .Values.runtime.existingSecret | default "foundryflow-runtime" }}
{{- end }}

{{/*
The workflow ServiceAccount, Role and RoleBinding: the serviceAccountName of every rendered
Argo document (foundryflow.config.Settings.argo_service_account).
*/}}
{{- define "foundryflow.workflowServiceAccount" -}}
foundryflow-workflow
{{- end }}

{{/*
Labels every object carries besides app.kubernetes.io/name and app.kubernetes.io/part-of,
which the rendered Argo documents already have (foundryflow argo render writes them), so
these alone are added to those. Argument: (list $ "<component>").
foundryflow.io/release is what the platform selects a release's objects on.
*/}}
{{- define "foundryflow.releaseLabels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ include "foundryflow.chart" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/version: {{ include "foundryflow.imageTag" $ | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/component: {{ index . 1 }}
foundryflow.io/release: {{ $.Release.Name }}
{{- end }}

{{/*
Labels of every object the chart writes itself. Argument: (list $ "<component>").
*/}}
{{- define "foundryflow.labels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "foundryflow.name" $ }}
{{ include "foundryflow.releaseLabels" . }}
app.kubernetes.io/part-of: foundryflow
{{- end }}

{{/*
Exact tokens of the checked-in argo/*.yaml documents that the chart rewrites. They are
what `foundryflow argo render` writes with pinned settings (foundryflow.config.Settings
defaults and foundryflow.compile.argo.RUNTIME_SECRET); tests/test_chart_foundryflow.py
fails when either side changes without the other. Each token includes its key and line
break, so only whole values of that key are replaced, never a substring of another value.
*/}}
{{- define "foundryflow.argo.sourceNamespace" -}}
foundryflow
{{- end }}
{{- define "foundryflow.argo.sourceImage" -}}
ghcr.io/foundryflow/foundryflow:0.1.0
{{- end }}
{{- define "foundryflow.argo.sourceRuntimeSecret" -}}
foundryflow-runtime
{{- end }}

{{/*
One rendered Argo file (argo/<pipeline>.yaml, one or more documents) made this release's:
plain string replacement of exact tokens, never tpl, since the documents are full of Argo's
own {{...}} expressions that Helm must not evaluate. Argument: (list $ <file text>).

- metadata.namespace "foundryflow" -> the release namespace (a line at two-space indent,
  which only the top-level metadata has);
- every container image "ghcr.io/foundryflow/foundryflow:0.1.0" -> image.repository:tag;
- with runtime.existingSecret, every secretKeyRef name "foundryflow-runtime" -> that name;
- the chart's release labels added under metadata.labels (the only "labels:" key at
  two-space indent in a document).
The values substituted are schema-checked (DNS names, an image reference without spaces or
YAML syntax), so a replacement cannot change the documents' structure.
*/}}
{{- define "foundryflow.argo.document" -}}
{{- $ := index . 0 -}}
{{- $text := index . 1 -}}
{{- $namespace := include "foundryflow.argo.sourceNamespace" $ -}}
{{- $image := include "foundryflow.argo.sourceImage" $ -}}
{{- $secret := include "foundryflow.argo.sourceRuntimeSecret" $ -}}
{{- $labels := include "foundryflow.releaseLabels" (list $ "workflow-template") | nindent 4 -}}
{{- $text = $text | replace (printf "\n  namespace: %s\n" $namespace) (printf "\n  namespace: %s\n" $.Release.Namespace) -}}
{{- $text = $text | replace (printf "image: %s\n" $image) (printf "image: %s\n" (include "foundryflow.image" $)) -}}
{{- $text = $text | replace (printf "name: %s\n" $secret) (printf "name: %s\n" (include "foundryflow.runtimeSecretName" $)) -}}
{{- $text = $text | replace "\n  labels:\n" (printf "\n  labels:%s\n" $labels) -}}
{{- $text -}}
{{- end }}

{{/*
Labels of one alert: its severity, then monitoring.rules.alertLabels (the schema keeps
"severity" out of those). Argument: (list $ "critical"|"warning").
*/}}
{{- define "foundryflow.alertLabels" -}}
{{- $ := index . 0 -}}
severity: {{ index . 1 }}
{{- with $.Values.monitoring.rules.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An alert's runbook: <monitoring.runbookBaseUrl>#<anchor>. Argument: (list $ "<anchor>").
*/}}
{{- define "foundryflow.runbookUrl" -}}
{{- printf "%s#%s" (index . 0).Values.monitoring.runbookBaseUrl (index . 1) }}
{{- end }}
