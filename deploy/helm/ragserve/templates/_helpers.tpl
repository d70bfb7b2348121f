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

{{/* GPUs each vLLM replica (and so each GPU worker pod) holds: tensor x pipeline parallelism. */}}
{{- define "ragserve.gpusPerReplica" -}}
{{- $g := .Values.app.generator }}
{{- mul (int $g.tensor_parallel_size) (int $g.pipeline_parallel_size) }}
{{- end }}

{{- define "ragserve.gpuGroupEnabled" -}}
{{- if eq (toString .Values.app.generator.device) "cuda" }}true{{ end }}
{{- end }}

{{/* Ray Serve options per deployment, the same as ragserve.app.serve_config() emits (tested). */}}
{{- define "ragserve.serveDeployments" -}}
{{- $out := list }}
{{- range $pair := list (list "router" "Router") (list "embedder" "Embedder") (list "generator" "Generator") }}
{{- $d := (index $.Values.app (index $pair 0)).deployment }}
{{- $initial := $d.initial_replicas }}
{{- if kindIs "invalid" $initial }}{{ $initial = $d.min_replicas }}{{ end }}
{{- $auto := dict "min_replicas" $d.min_replicas "max_replicas" $d.max_replicas "initial_replicas" $initial
      "target_ongoing_requests" $d.target_ongoing_requests "upscale_delay_s" $d.upscale_delay_s
      "downscale_delay_s" $d.downscale_delay_s "look_back_period_s" $d.look_back_period_s }}
{{- $entry := dict "name" (index $pair 1) "autoscaling_config" $auto
      "max_ongoing_requests" $d.max_ongoing_requests "max_queued_requests" $d.max_queued_requests
      "backpressure_config" (dict "status_code" 503 "retry_after_s" $d.retry_after_s) }}
{{- $gpus := include "ragserve.gpusPerReplica" $ | int }}
{{- if and (eq (index $pair 0) "generator") (include "ragserve.gpuGroupEnabled" $) (gt $gpus 1) }}
{{- /* generator/deployment.py placement(): one GPU bundle per rank, the actor in bundle 0 */}}
{{- $bundles := list (dict "CPU" $d.num_cpus "GPU" 1) }}
{{- range until (sub $gpus 1 | int) }}{{ $bundles = append $bundles (dict "GPU" 1) }}{{ end }}
{{- $_ := set $entry "placement_group_bundles" $bundles }}
{{- $_ := set $entry "placement_group_strategy" (ternary "STRICT_PACK" "PACK" (eq (int $.Values.app.generator.pipeline_parallel_size) 1)) }}
{{- end }}
{{- $out = append $out $entry }}
{{- end }}
{{- toYaml $out }}
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
- name: {{ $.Values.app.router.auth.api_keys_env | default "RAGSERVE_API_KEYS" }}
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
- {name: data, mountPath: {{ .Values.app.data_dir | quote }}}
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
nodeSelector, tolerations, affinity, headOnly (bool).
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
  {{- if ne .component "head" }}
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
  containers:
    - name: {{ ternary "ray-head" "ray-worker" (eq .component "head") }}
      image: {{ include "ragserve.image" (dict "root" .root "kind" .image) }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      ports:
        {{- if eq .component "head" }}
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
  volumes:
    {{- include "ragserve.volumes" (dict "root" .root "shm" .shm) | nindent 4 }}
{{- end }}
