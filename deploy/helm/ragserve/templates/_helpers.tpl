{{/* Names: truncated to 63 characters (DNS label). */}}
{{- define "ragserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ragserve.fullname" -}}
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

{{/* The RayService name: KubeRay appends suffixes (-serve-svc, -raycluster-xxxxx), so keep it short. */}}
{{- define "ragserve.rayServiceName" -}}
{{- include "ragserve.fullname" . | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* The ingestion RayJob; KubeRay labels its submitter pod with this name (the NetworkPolicy needs it). */}}
{{- define "ragserve.ingestJobName" -}}
{{- printf "%s-ingest" (include "ragserve.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "ragserve.serveServiceName" -}}
{{- printf "%s-serve" (include "ragserve.rayServiceName" .) }}
{{- end }}

{{- define "ragserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ragserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Ray pods: no app.kubernetes.io/name, which KubeRay sets to "kuberay" on the pods it creates. */}}
{{- define "ragserve.podSelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: ragserve
{{- end }}

{{- define "ragserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ragserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ragserve
{{- end }}

{{- define "ragserve.image" -}}
{{- $tag := ternary .root.Values.image.gpuTag .root.Values.image.cpuTag (eq .kind "gpu") }}
{{- printf "%s:%s" .root.Values.image.repository (default (printf "%s-%s" .root.Chart.AppVersion .kind) $tag) }}
{{- end }}

{{/*
The application config as the replicas will see it: the config model's defaults (app-defaults.yaml, generated
from the model), the profile file over them (profiles/ links to the package's services/ragserve/profiles: what
differs from the model) and `.Values.app` over both, the same layering `ragserve.app:build_app` applies to
`args`. Templates read the app only through this; the chart has no defaults of its own.
*/}}
{{- define "ragserve.app" -}}
{{- $file := printf "profiles/%s.yaml" (toString .Values.app.profile) }}
{{- $profile := .Files.Get $file | fromYaml }}
{{- if not $profile }}{{ fail (printf "app.profile: the chart has no %s" $file) }}{{ end }}
{{- $defaults := .Files.Get "app-defaults.yaml" | fromYaml }}
{{- toYaml (mustMergeOverwrite $defaults $profile (deepCopy .Values.app)) }}
{{- end }}

{{/* `args` of the Serve application: `.Values.app` without deployment blocks. Serve hashes args into the
app's code version (any change restarts every replica), so scaling knobs travel in `deployments:` only. */}}
{{- define "ragserve.appArgs" -}}
{{- $args := deepCopy .Values.app }}
{{- range $section := list "router" "embedder" "generator" "reranker" }}
{{- if kindIs "map" (index $args $section) }}
{{- $_ := unset (index $args $section) "deployment" }}
{{- if not (index $args $section) }}{{ $_ := unset $args $section }}{{ end }}
{{- end }}
{{- end }}
{{- toYaml $args }}
{{- end }}

{{/* serveConfigV2 `deployments:`: each deployment's `deployment` block of the merged app, verbatim (its
keys are Serve's own option names; ragserve.config.ServeOptions); the Reranker only when enabled
(ragserve.app.deployed_sections). */}}
{{- define "ragserve.serveDeployments" -}}
{{- $app := include "ragserve.app" . | fromYaml }}
{{- $out := list }}
{{- range $pair := list (list "router" "Router") (list "embedder" "Embedder") (list "generator" "Generator") (list "reranker" "Reranker") }}
{{- $section := index $app (index $pair 0) }}
{{- if or (ne (index $pair 0) "reranker") $section.enabled }}{{/* optional: only when enabled */}}
{{- $out = append $out (merge (dict "name" (index $pair 1)) $section.deployment) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* GPUs each vLLM pod holds: tensor x pipeline parallelism (one replica per pod). */}}
{{- define "ragserve.gpusPerReplica" -}}
{{- $g := (include "ragserve.app" . | fromYaml).generator }}
{{- mul (int $g.tensor_parallel_size) (int $g.pipeline_parallel_size) }}
{{- end }}

{{- define "ragserve.gpuGroupEnabled" -}}
{{- if eq (toString (include "ragserve.app" . | fromYaml).generator.device) "cuda" }}true{{ end }}
{{- end }}

{{/* Bounds of the GPU group: workers.gpu.{min,max}Replicas, else the generator's autoscaling_config. */}}
{{- define "ragserve.gpuMinReplicas" -}}
{{- $gen := (include "ragserve.app" . | fromYaml).generator.deployment.autoscaling_config }}
{{- ternary $gen.min_replicas .Values.workers.gpu.minReplicas (kindIs "invalid" .Values.workers.gpu.minReplicas) }}
{{- end }}

{{- define "ragserve.gpuMaxReplicas" -}}
{{- $gen := (include "ragserve.app" . | fromYaml).generator.deployment.autoscaling_config }}
{{- ternary $gen.max_replicas .Values.workers.gpu.maxReplicas (kindIs "invalid" .Values.workers.gpu.maxReplicas) }}
{{- end }}

{{/* Whether the head gets a PodDisruptionBudget: podDisruptionBudget.protectHead, null = while GCS fault
tolerance is off (then the head's eviction restarts the whole cluster). */}}
{{- define "ragserve.protectHead" -}}
{{- $p := .Values.podDisruptionBudget.protectHead }}
{{- if ternary (not .Values.gcsFaultTolerance.enabled) $p (kindIs "invalid" $p) }}true{{ end }}
{{- end }}

{{/* Redis of GCS fault tolerance: "host:port" of gcsFaultTolerance.redisAddress (default port 6379). */}}
{{- define "ragserve.redisPort" -}}
{{- $addr := .Values.gcsFaultTolerance.redisAddress }}
{{- $host := (urlParse (ternary $addr (printf "redis://%s" $addr) (contains "://" $addr))).host }}
{{- ternary (last (splitList ":" $host)) "6379" (contains ":" $host) }}
{{- end }}

{{/* Milvus' port for the egress rule: milvus.networkPolicy.port, else the port of app.store.uri (the one owner
of where Milvus listens). */}}
{{- define "ragserve.milvusPort" -}}
{{- $uri := (include "ragserve.app" . | fromYaml).store.uri | toString }}
{{- $port := (urlParse $uri).host | splitList ":" | rest | last }}
{{- $set := .Values.milvus.networkPolicy.port }}
{{- if not (kindIs "invalid" $set) }}{{ $set }}
{{- else if $port }}{{ $port }}
{{- else }}{{ fail (printf "app.store.uri %q names no port: write it (http(s)://host:19530), or set milvus.networkPolicy.port" $uri) }}
{{- end }}
{{- end }}

{{/* Environment of every Ray container: secrets by reference, caches on writable volumes. */}}
{{- define "ragserve.env" -}}
- name: HF_HOME
  value: {{ printf "%s/huggingface" .Values.modelCache.mountPath | quote }}
- name: VLLM_NO_USAGE_STATS
  value: "1"
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: TRITON_CACHE_DIR
  value: /tmp/triton
{{- range $name, $value := .Files.Get "ray-node-env.yaml" | fromYaml }}
- name: {{ $name }}  # ray-node-env.yaml: what every Ray process reads at its start
  value: {{ $value | quote }}
{{- end }}
{{- $tracing := (include "ragserve.app" . | fromYaml).observability.tracing }}
{{- if $tracing.enabled }}
- name: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  # the proxies' spans too (replicas also get it from args)
  value: {{ $tracing.endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: ragserve
- name: RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH  # Ray 2.60 starts the proxies without tracing_config
  value: ragserve.observability.tracing:otlp_span_processors
- name: RAY_SERVE_TRACING_SAMPLING_RATIO
  value: {{ $tracing.sampling_ratio | toString | quote }}
{{- end }}
{{- with .Values.milvus.tokenSecret.name }}
- name: RAGSERVE__STORE__TOKEN
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: {{ $.Values.milvus.tokenSecret.key | quote }}}
{{- end }}
{{- if .Values.milvus.caSecret.name }}
- name: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
  value: /etc/ragserve/milvus-ca/ca.crt
{{- end }}
{{- with .Values.apiKeys.secretName }}
- name: {{ (include "ragserve.app" $ | fromYaml).router.auth.api_keys_env | required "app.router.auth.api_keys_env is required" }}
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: {{ $.Values.apiKeys.key | quote }}}
{{- end }}
{{- with .Values.huggingface.tokenSecret.name }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: {{ $.Values.huggingface.tokenSecret.key | quote }}}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "ragserve.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: dshm, mountPath: /dev/shm}
- {name: home-cache, mountPath: /home/ray/.cache}
- {name: home-config, mountPath: /home/ray/.config}
- {name: data, mountPath: {{ (include "ragserve.app" . | fromYaml).data_dir | quote }}}
- {name: model-cache, mountPath: {{ .Values.modelCache.mountPath | quote }}}
{{- if .Values.milvus.caSecret.name }}
- {name: milvus-ca, mountPath: /etc/ragserve/milvus-ca, readOnly: true}
{{- end }}
{{- end }}

{{/* Pod volumes; .shm is the /dev/shm size of the group. */}}
{{- define "ragserve.volumes" -}}
{{- $v := .root.Values -}}
- {name: tmp, emptyDir: {}}
- {name: dshm, emptyDir: {medium: Memory, sizeLimit: {{ .shm }}}}
- {name: home-cache, emptyDir: {}}
- {name: home-config, emptyDir: {}}
- {name: data, emptyDir: {}}
{{- if or $v.modelCache.existingClaim $v.modelCache.create }}
- name: model-cache
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-model-cache" (include "ragserve.fullname" .root)) $v.modelCache.existingClaim }}
{{- else }}
- {name: model-cache, emptyDir: {sizeLimit: {{ $v.modelCache.size }}}}
{{- end }}
{{- if $v.milvus.caSecret.name }}
- name: milvus-ca
  secret:
    secretName: {{ $v.milvus.caSecret.name }}
    items: [{key: {{ $v.milvus.caSecret.key | quote }}, path: ca.crt}]
{{- end }}
{{- end }}

{{/*
Pod template of a Ray group. Args: root, component (head|cpu|gpu), image kind, resources, shm,
nodeSelector, tolerations, affinity; optional spread (a workers.*.topologySpread), extraMounts and
extraVolumes (lists).
*/}}
{{- define "ragserve.podTemplate" -}}
{{- $v := .root.Values -}}
metadata:
  labels:
    {{- include "ragserve.podSelectorLabels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
    helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if not (hasSuffix "head" .component) }}
  automountServiceAccountToken: false
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $v.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with .nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .spread }}
  {{- if .whenUnsatisfiable }}
  # One pod per domain before a second on any: a node drain or a lost node takes only its share of the group.
  # Per RayCluster (ray.io/cluster, set by KubeRay), so an upgrade's new cluster spreads on its own; nodes the
  # pods cannot use (tainted, cordoned for a drain) are not domains.
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: {{ .topologyKey }}
      whenUnsatisfiable: {{ .whenUnsatisfiable }}
      nodeAffinityPolicy: Honor
      nodeTaintsPolicy: Honor
      labelSelector:
        matchLabels:
          {{- include "ragserve.podSelectorLabels" $.root | nindent 10 }}
          app.kubernetes.io/component: {{ $.component }}
      matchLabelKeys: [ray.io/cluster]
  {{- end }}
  {{- end }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" (hasSuffix "head" .component) }}
      image: {{ include "ragserve.image" (dict "root" .root "kind" .image) }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      ports:
        {{- if hasSuffix "head" .component }}
        - {name: gcs-server, containerPort: 6379}
        - {name: dashboard, containerPort: 8265}
        - {name: client, containerPort: 10001}
        {{- end }}
        - {name: serve, containerPort: 8000}
        - {name: metrics, containerPort: 8080}
      env:
        {{- include "ragserve.env" .root | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      volumeMounts:
        {{- include "ragserve.volumeMounts" .root | nindent 8 }}
        {{- with .extraMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    {{- include "ragserve.volumes" (dict "root" .root "shm" .shm) | nindent 4 }}
    {{- with .extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
