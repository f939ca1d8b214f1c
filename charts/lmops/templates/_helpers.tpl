{{/* Names and labels shared by every template. */}}

{{- define "lmops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lmops.fullname" -}}
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

{{- define "lmops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lmops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lmops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lmops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "lmops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lmops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lmops.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "lmops.clusterwide" -}}
{{- if not .Values.operator.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
Rules for the namespaced resources the operator works on, the same whether granted per namespace (Role) or
everywhere (ClusterRole). Each line is there because code uses it:
- languagemodels: kopf watches them and patches finalizers/annotations; the operator patches controls back.
- languagemodels/status: the status the operator writes. /finalizers: owner references with
  blockOwnerDeletion on the children need `update` here (OwnerReferencesPermissionEnforcement).
- rayservices, controllerrevisions, services, poddisruptionbudgets, networkpolicies: the children, applied
  server-side (create + patch), watched, and deleted when stale.
- events: kopf and the operator report on objects (core and events.k8s.io).
- configmaps (get): the canary quality gate reads its evaluation set from spec.rollout.qualityGate.configMapRef.
*/}}
{{- define "lmops.namespacedRules" -}}
- apiGroups: ["lmops.io"]
  resources: ["languagemodels"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["lmops.io"]
  resources: ["languagemodels/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["lmops.io"]
  resources: ["languagemodels/finalizers"]
  verbs: ["update"]
- apiGroups: ["ray.io"]
  resources: ["rayservices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["ray.io"]
  resources: ["rayclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.secretReads.enabled }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
  {{- with .Values.rbac.secretReads.resourceNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
{{- end }}
{{- end -}}
