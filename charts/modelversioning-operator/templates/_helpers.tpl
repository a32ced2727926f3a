{{/* Names, labels and the pieces shared by several templates. */}}

{{- define "mvo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mvo.fullname" -}}
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

{{- define "mvo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mvo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mvo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mvo.labels" -}}
helm.sh/chart: {{ include "mvo.chart" . }}
{{ include "mvo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelversioning-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mvo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mvo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image; also the default init-container image of model pods. */}}
{{- define "mvo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator serves when not cluster-wide (validated: at least one). */}}
{{- define "mvo.watchNamespaces" -}}
{{- if and (not .Values.watch.allNamespaces) (empty .Values.watch.namespaces) -}}
{{- fail "watch.namespaces must list at least one namespace when watch.allNamespaces is false" -}}
{{- end -}}
{{- toJson (uniq .Values.watch.namespaces) -}}
{{- end -}}

{{/* The enabled routers of files/routers.yaml (generated from the router modules by `modelversioning
gen-crds`): a router with a route object when routers.<name>.enabled, one without (none) always.
name -> {group, version, kind, plural, reads}. */}}
{{- define "mvo.enabledRouterEntries" -}}
{{- $on := dict -}}
{{- range $name, $r := (.Files.Get "files/routers.yaml" | fromYaml) -}}
{{- if or (not (dig "kind" "" $r)) (dig $name "enabled" false $.Values.routers) -}}
{{- $_ := set $on $name $r -}}
{{- end -}}
{{- end -}}
{{- toJson $on -}}
{{- end -}}

{{/* The enabled routers with a route object: name -> group/version/kind/plural/reads. */}}
{{- define "mvo.routeRouters" -}}
{{- $on := dict -}}
{{- range $name, $r := (include "mvo.enabledRouterEntries" . | fromJson) -}}
{{- if dig "kind" "" $r -}}{{- $_ := set $on $name $r -}}{{- end -}}
{{- end -}}
{{- toJson $on -}}
{{- end -}}

{{/* serving.enabledRouters of the settings file, derived from routers.*.enabled. */}}
{{- define "mvo.enabledRouters" -}}
{{- toJson (keys (include "mvo.enabledRouterEntries" . | fromJson) | sortAlpha) -}}
{{- end -}}

{{/* The operator settings file (operator/modelversioning/api/settings.py). */}}
{{- define "mvo.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $serving := deepCopy (default dict $cfg.serving) -}}
{{- if hasKey $serving "enabledRouters" -}}
{{- fail "config.serving.enabledRouters is derived from routers.*.enabled; do not set it" -}}
{{- end -}}
{{- $_ := set $serving "initImage" (default (include "mvo.image" .) $serving.initImage) -}}
{{- $_ := set $serving "enabledRouters" (include "mvo.enabledRouters" . | fromJsonArray) -}}
{{- if .Values.nodeCache.enabled -}}
{{- $_ := set $serving "nodeCachePort" (int .Values.nodeCache.port) -}}
{{- end -}}
{{- $_ := set $cfg "serving" $serving -}}
{{- if not $cfg.region -}}
{{- $_ := unset $cfg "region" -}}
{{- end -}}
{{- $graph := dict -}}
{{- range $from, $to := (default dict $cfg.stageGraph) -}}
{{- if not (kindIs "invalid" $to) -}}
{{- $_ := set $graph $from $to -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "stageGraph" $graph -}}
{{- /* the operator records modelversioning.io/requested-by as an identity only when the API server
enforces the requested-by policy (templates/admission.yaml); never set by hand (values schema) */ -}}
{{- $enforced := and .Values.admission.enabled (has "Deny" .Values.admission.validationActions) -}}
{{- $_ := set $cfg "admission" (dict "enforced" $enforced) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
RBAC rules, split by who needs them. Each helper takes a dict {root, scope} where scope is
"cluster" (ClusterRole, watching all namespaces) or "namespace" (Role in one watched namespace).
*/}}

{{/* What kopf (the framework) needs inside the watched scope. */}}
{{- define "mvo.rules.framework" -}}
{{- $v := .root.Values -}}
# kopf and the operator post Events on the objects they handle (never read back); a repeat raises
# the count of the Event posted before (an Event series: patch).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if $v.ha.enabled }}
# kopf peering: keep-alives of the replicas in the peering object (list/watch it, patch status).
- apiGroups: [kopf.dev]
  resources: [{{ if eq .scope "cluster" }}clusterkopfpeerings{{ else }}kopfpeerings{{ end }}]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}

{{/* What kopf needs at cluster scope: runtime discovery of CRDs (and namespaces when namespaced). */}}
{{- define "mvo.rules.discovery" -}}
# kopf notices CRDs being added/removed (e.g. Istio installed after the operator).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if eq .scope "namespace" }}
# kopf resolves the watched namespaces and notices them being created/deleted.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{/* Artifact credentials: `get` by name, never list/watch. */}}
{{- define "mvo.rules.secrets" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# signed models: trust policies name public keys and certificate roots in ConfigMaps (or Secrets), read
# by name when a version is verified, like the artifact's credentials
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
{{- end -}}

{{/*
What our controllers need. Reads come from the watches (list/watch), so there is no `get` except on
Secrets, which are read by name and never listed. Server-side apply of a child that does not exist
yet is authorized as `create`, hence create + patch.
*/}}
{{- define "mvo.rules.controller" -}}
{{- $v := .root.Values -}}
# ModelVersions: watched; patched only for the operator's own finalizer (metadata.finalizers) and
# annotations (rollout records, retention's archive order and artifact deletion record).
- apiGroups: [modelversioning.io]
  resources: [modelversions]
  verbs: [list, watch, patch]
# ModelEndpoints: watched, and patched for one thing only, the operator's own finalizer
# (modelversioning.io/drain: a deletion removes the route first, then the slots after the drain grace);
# the operator never writes a user's spec. ModelApprovals and ModelRuntimes (the namespace's runtime
# catalog): watched only.
- apiGroups: [modelversioning.io]
  resources: [modelendpoints]
  verbs: [list, watch, patch]
- apiGroups: [modelversioning.io]
  resources: [modelapprovals, modelruntimes]
  verbs: [list, watch]
# Models: watched; created (only when absent, empty spec) as the registry's record of a model name
# that has none. Never patched, updated or deleted: a user's later apply of the Model adopts it.
- apiGroups: [modelversioning.io]
  resources: [models]
  verbs: [list, watch, create]
# Status is written once per reconcile with a merge patch.
- apiGroups: [modelversioning.io]
  resources: [modelversions/status, modelendpoints/status, models/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion to their ModelEndpoint; clusters with
# the OwnerReferencesPermissionEnforcement admission plugin require this.
- apiGroups: [modelversioning.io]
  resources: [modelendpoints/finalizers]
  verbs: [update]
# One Deployment and one Service per variant (server-side apply, label-selected watches; deleted
# when a variant is removed).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# The slots' pods, read only (label-selected watch): what their status says of a failing slot
# (an init container that refused the digest, an image pull, a crash loop, a probe that never passes).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- if eq .scope "namespace" }}
# Artifact credentials named by spec.artifact.secretRef: read by name, never listed (cluster-wide:
# only in rbac.secretNamespaces, through the <fullname>-secrets ClusterRole and RoleBindings).
{{- include "mvo.rules.secrets" . | nindent 0 }}
{{- end }}
{{- range $name, $r := (include "mvo.routeRouters" .root | fromJson) }}
# The {{ $name }} router's route objects ({{ $r.kind }}).
- apiGroups: [{{ $r.group }}]
  resources: [{{ $r.plural }}]
  verbs: [list, watch, create, patch, delete]
{{- end }}
{{- include "mvo.rules.reads" (dict "root" .root "cluster" false) }}
{{- if eq .scope "cluster" }}
{{- include "mvo.rules.reads" (dict "root" .root "cluster" true) }}
{{- end }}
{{- end -}}

{{/*
What the enabled routers read of the platform (files/routers.yaml `reads`): list/watch, never written.
Takes {root, cluster}: cluster true for the cluster-scoped resources (GatewayClasses: in a namespaced
install, the ClusterRole <fullname>-platform), false for the namespaced ones (Gateways).
*/}}
{{- define "mvo.rules.reads" -}}
{{- $seen := dict -}}
{{- range $name, $r := (include "mvo.enabledRouterEntries" .root | fromJson) -}}
{{- range $read := (dig "reads" (list) $r) -}}
{{- $key := printf "%s/%s" $read.group $read.plural -}}
{{- if and (eq (not $read.namespaced) $.cluster) (not (hasKey $seen $key)) -}}
{{- $_ := set $seen $key true }}
# The {{ $name }} router reads {{ $read.kind }} objects (watched, never written).
- apiGroups: [{{ $read.group }}]
  resources: [{{ $read.plural }}]
  verbs: [list, watch]
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
