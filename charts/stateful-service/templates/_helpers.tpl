{{/*
Chart name, overridable with nameOverride (e.g. "qdrant", "valkey").
*/}}
{{- define "stateful-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (the DNS label limit of a Service
name). A release name that already contains the chart name is used as is. It names the
ClusterIP Service, i.e. the endpoint.
*/}}
{{- define "stateful-service.fullname" -}}
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
StatefulSet name: the fullname cut to 52 characters. The controller labels each pod
controller-revision-hash=<statefulset>-<10-character hash>, a label value limited to 63
characters, so a longer name would make every pod fail to be created.
*/}}
{{- define "stateful-service.statefulSetName" -}}
{{- include "stateful-service.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
Headless Service name (the StatefulSet's serviceName): "-headless" after the fullname cut
to 54 characters, so it stays a 63-character DNS label.
*/}}
{{- define "stateful-service.headlessName" -}}
{{- printf "%s-headless" (include "stateful-service.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "stateful-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image tag that runs: image.tag, or the chart's appVersion when empty. It is also the
app.kubernetes.io/version label: this chart runs Qdrant, Valkey or Milvus, so the label
must tell which version of what actually runs, not the Qdrant version of appVersion (the
schema keeps the tag a valid label value).
*/}}
{{- define "stateful-service.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Standard labels WITHOUT foundryflow.io/release. Only the headless Service uses them alone:
endpoint discovery (foundryflow.cluster.base.endpoints_from_manifests) reports every
Service labelled foundryflow.io/release=<release>, and the headless Service is not an
endpoint of the release: it resolves to the individual pods (for peer discovery and stable
per-pod names), not to a load-balanced address. Labelled, it would be reported as a second
endpoint of the same server.
*/}}
{{- define "stateful-service.standardLabels" -}}
helm.sh/chart: {{ include "stateful-service.chart" . }}
{{ include "stateful-service.selectorLabels" . }}
app.kubernetes.io/version: {{ include "stateful-service.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: datastore
app.kubernetes.io/part-of: foundryflow
{{- end }}

{{/*
Labels of every object but the headless Service. foundryflow.io/release is what endpoint
discovery selects on: the platform finds a release's endpoints among the Services carrying
it.
*/}}
{{- define "stateful-service.labels" -}}
{{ include "stateful-service.standardLabels" . }}
foundryflow.io/release: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the volumeClaimTemplates (and so of the PersistentVolumeClaims made from them).
A StatefulSet's volumeClaimTemplates cannot change after creation, so they carry only
labels that never change for a release: no helm.sh/chart and no app.kubernetes.io/version,
which would make every chart or image upgrade fail.
*/}}
{{- define "stateful-service.claimLabels" -}}
{{ include "stateful-service.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: datastore
app.kubernetes.io/part-of: foundryflow
foundryflow.io/release: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels: immutable once a StatefulSet exists, so only name and instance.
*/}}
{{- define "stateful-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stateful-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "stateful-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stateful-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The server port, as Services declare it (same name, number and protocol on both).
*/}}
{{- define "stateful-service.servicePort" -}}
- name: {{ .Values.portName }}
  port: {{ .Values.port }}
  targetPort: {{ .Values.portName }}
  protocol: TCP
  {{- with .Values.appProtocol }}
  appProtocol: {{ . | quote }}
  {{- end }}
{{- end }}
