{{/*
The function's name: fixed, because func.yaml names the Knative Service and the settings
ConfigMap, and the OIDC audience and RBAC subjects are built from it.
*/}}
{{- define "adh.name" -}}argo-disruption-handler{{- end }}

{{- define "adh.settingsName" -}}argo-disruption-handler-settings{{- end }}

{{- define "adh.labels" -}}
app.kubernetes.io/name: argo-disruption-handler
app.kubernetes.io/part-of: argo-disruption-handler
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}

{{/* The audience of the tokens the Triggers send (Serving publishes none for a Service). */}}
{{- define "adh.audience" -}}
serving.knative.dev/service/{{ .Release.Namespace }}/argo-disruption-handler
{{- end }}

{{- define "adh.brokerRef" -}}
ref:
  apiVersion: eventing.knative.dev/v1
  kind: Broker
  name: {{ .Values.broker.name }}
{{- end }}

{{/* Every Trigger's subscriber: the function's Knative Service, with the token audience. */}}
{{- define "adh.subscriber" -}}
subscriber:
  ref:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: argo-disruption-handler
  audience: {{ include "adh.audience" . }}
{{- end }}

{{/* The workflow-pods source's namespaces: the listed ones, else all but the excluded. */}}
{{- define "adh.workflowNamespaceSelector" -}}
{{- if .Values.namespaces }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: In
    values: {{ toJson .Values.namespaces }}
{{- else if .Values.excludedNamespaces }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ toJson .Values.excludedNamespaces }}
{{- else }}
{}
{{- end }}
{{- end }}
