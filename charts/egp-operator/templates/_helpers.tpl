{{/* The release's name for its objects: the chart's name, unless the release is named after it. */}}
{{- define "egp-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "egp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What picks the operator's pods: stable for the release's life (a selector is immutable). */}}
{{- define "egp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "egp-operator.labels" -}}
{{ include "egp-operator.selectorLabels" . }}
app.kubernetes.io/part-of: egp-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations of every object, when there are any. */}}
{{- define "egp-operator.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "egp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "egp-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "egp-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
A binding of the operator's ServiceAccount: (dict "root" $ "kind" "RoleBinding" "name" NAME
"namespace" NS); a ClusterRoleBinding when "namespace" is absent.
*/}}
{{- define "egp-operator.binding" -}}
{{- $root := .root -}}
{{- $namespaced := hasKey . "namespace" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $namespaced | ternary "RoleBinding" "ClusterRoleBinding" }}
metadata:
  name: {{ .name }}
  {{- if $namespaced }}
  namespace: {{ .namespace }}
  {{- end }}
  labels:
    {{- include "egp-operator.labels" $root | nindent 4 }}
  {{- with include "egp-operator.annotations" $root }}{{ . | nindent 2 }}{{ end }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $namespaced | ternary "Role" "ClusterRole" }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "egp-operator.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end -}}
