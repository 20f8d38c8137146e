{{/* Chart name, overridable with nameOverride. */}}
{{- define "tro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, else <release> when it contains the chart name,
else <release>-<name>. Truncated to 63 characters (DNS label).
*/}}
{{- define "tro.fullname" -}}
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

{{- define "tro.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "tro.labels" -}}
helm.sh/chart: {{ include "tro.chart" . }}
{{ include "tro.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels the Deployment selects its pods by (immutable: keep them stable). */}}
{{- define "tro.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Name of the ServiceAccount the operator runs as. */}}
{{- define "tro.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tro.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's identity as the API server sees it (the admission policy
lets it, and only it, write with the operator's field manager). */}}
{{- define "tro.operatorUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "tro.serviceAccountName" . }}
{{- end }}

{{/* Name of the leader-election Lease. */}}
{{- define "tro.leaseName" -}}
{{- default (include "tro.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Watched namespaces, de-duplicated, in the given order. */}}
{{- define "tro.watchNamespaces" -}}
{{- .Values.watchNamespaces | uniq | join "," }}
{{- end }}

{{/* Image reference: repository@digest or repository:tag (tag defaults to appVersion). */}}
{{- define "tro.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Address the metrics/health server binds to; IPv6 addresses are bracketed. */}}
{{- define "tro.metricsAddr" -}}
{{- if contains ":" .Values.metrics.bindAddress }}
{{- printf "[%s]:%d" .Values.metrics.bindAddress (int .Values.metrics.port) }}
{{- else }}
{{- printf "%s:%d" .Values.metrics.bindAddress (int .Values.metrics.port) }}
{{- end }}
{{- end }}

{{/* A duration of the form the schema allows (<n>ms|s|m|h) in milliseconds. */}}
{{- define "tro.durationMs" -}}
{{- $d := toString . }}
{{- $n := int64 (regexFind "^[0-9]+" $d) }}
{{- $unit := regexReplaceAll "^[0-9]+" $d "" }}
{{- $scale := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 }}
{{- mul $n (get $scale $unit) }}
{{- end }}

{{/* Checks of value combinations a JSON schema cannot express. */}}
{{- define "tro.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled=true: without a Lease every replica would write the consumer ConfigMaps" }}
{{- end }}
{{- $le := .Values.leaderElection }}
{{- if and $le.enabled (ge (int64 (include "tro.durationMs" $le.renewInterval)) (int64 (include "tro.durationMs" $le.leaseDuration))) }}
{{- fail (printf "leaderElection.renewInterval (%s) must be shorter than leaderElection.leaseDuration (%s)" $le.renewInterval $le.leaseDuration) }}
{{- end }}
{{- if ge (int64 (include "tro.durationMs" .Values.shutdownTimeout)) (mul (int64 .Values.terminationGracePeriodSeconds) 1000) }}
{{- fail (printf "shutdownTimeout (%s) must be shorter than terminationGracePeriodSeconds (%v s), or the kubelet kills the operator mid-write" .Values.shutdownTimeout .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (gt (int .Values.replicas) 1) (not (kindIs "invalid" $pdb.minAvailable)) (ne (toString $pdb.minAvailable) "") (not (kindIs "invalid" $pdb.maxUnavailable)) (ne (toString $pdb.maxUnavailable) "") }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (set the other to \"\")" }}
{{- end }}
{{- end }}

{{/*
Rules for the watched resources. Used by the ClusterRole (cluster-wide mode)
and by the Role in each watched namespace (watchNamespaces mode). The operator
never reads Secrets, never updates or deletes ConfigMaps, and creates none
unless scrapeJobs.enabled (the relations' scrape ConfigMaps).
*/}}
{{- define "tro.watchRules" -}}
# TracingRelations: watched; patched (JSON patch) to add and remove the
# tracing.relations.dev/cleanup finalizer.
- apiGroups: ["tracing.relations.dev"]
  resources: ["tracingrelations"]
  verbs: ["get", "list", "watch", "patch"]
# Status subresource: conditions, endpoint and consumer counts.
- apiGroups: ["tracing.relations.dev"]
  resources: ["tracingrelations/status"]
  verbs: ["patch"]
# Consumer ConfigMaps (labelled tracing.relations.dev/relation): watched and
# server-side applied (only the operator's own data keys and annotations).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "patch"]
# Services a TracingRelation follows (spec.backend.service): read only.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
# Events about TracingRelations and consumers: one events.k8s.io/v1 Event is
# created per change of state (never patched).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rollouts.enabled }}
# rollouts.enabled: workloads labelled tracing.relations.dev/rollout=true are
# watched (by that label) and their pod-template hash annotation is applied.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- if .Values.scrapeJobs.enabled }}
# scrapeJobs.enabled: the pods of consumers that ask to be scraped are watched
# (by the consumer's selector, in the consumer's namespace) to resolve their
# scrape targets; read only.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# scrapeJobs.enabled: a relation's spec.scrape.configMap is server-side applied,
# which creates it when missing. A create request has no name for the
# authorizer, so this cannot be limited by resourceNames; still no update or
# delete.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
{{- end }}
{{- end }}
