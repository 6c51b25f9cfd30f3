{{/* The chart name, overridable. */}}
{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release-qualified name used for every object. */}}
{{- define "berth.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "berth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels the Service and Deployment select pods by. */}}
{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The htpasswd Secret's name: the user's, or the chart's own. */}}
{{- define "berth.htpasswdSecret" -}}
{{- default (printf "%s-htpasswd" (include "berth.fullname" .)) .Values.auth.htpasswd.existingSecret -}}
{{- end -}}

{{/*
"true" on S3 storage: the bucket is shared by every replica, and during a rollout by the old pod
and the new one too, so config.yml gets a `cluster` section. (Filesystem storage is one pod.)
*/}}
{{- define "berth.cluster" -}}
{{- if eq .Values.storage.type "s3" -}}true{{- end -}}
{{- end -}}

{{/* The http.secret Secret's name: the user's, or the chart's own. */}}
{{- define "berth.httpSecretName" -}}
{{- default (printf "%s-http-secret" (include "berth.fullname" .)) .Values.httpSecret.existingSecret -}}
{{- end -}}

{{/* "true" when REGISTRY_HTTP_SECRET comes from a Secret (always with several nodes). */}}
{{- define "berth.httpSecret" -}}
{{- $h := .Values.httpSecret -}}
{{- if or $h.existingSecret $h.value $h.generate (include "berth.cluster" .) -}}true{{- end -}}
{{- end -}}

{{/* The S3 credentials Secret's name, "" when the AWS chain supplies them. */}}
{{- define "berth.s3Secret" -}}
{{- $s3 := .Values.storage.s3 -}}
{{- if eq .Values.storage.type "s3" -}}
{{- if $s3.existingSecret -}}
{{- $s3.existingSecret -}}
{{- else if $s3.accessKey -}}
{{- printf "%s-s3" (include "berth.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where the token signing key Secret is mounted. */}}
{{- define "berth.signingKeyPath" -}}/etc/berth/token/signing.pem{{- end -}}

{{/*
Values the chart cannot turn into a working registry: rendering stops with the reason. Included
by the Deployment and the ConfigMap, so `helm template` and `helm install` both stop.
*/}}
{{- define "berth.checks" -}}
{{- $builtin := dig "auth" "token" "builtin" nil (default (dict) .Values.config) -}}
{{- if and (gt (int .Values.replicaCount) 1) (ne .Values.storage.type "s3") -}}
{{- fail (printf "replicaCount %d needs storage.type: s3 (one bucket shared by every pod): filesystem storage on a ReadWriteOnce PersistentVolumeClaim (or an emptyDir per pod) cannot be shared by several pods" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (eq .Values.storage.type "s3") (not .Values.storage.s3.bucket) -}}
{{- fail "storage.type: s3 needs storage.s3.bucket (an existing bucket)" -}}
{{- end -}}
{{- if and (eq .Values.storage.type "s3") (not .Values.storage.s3.existingSecret) (ne (not .Values.storage.s3.accessKey) (not .Values.storage.s3.secretKey)) -}}
{{- fail "storage.s3.accessKey and storage.s3.secretKey go together (or use storage.s3.existingSecret, or neither for the AWS credential chain)" -}}
{{- end -}}
{{- if and (include "berth.cluster" .) $builtin (not .Values.tokenSigningKey.existingSecret) -}}
{{- fail "the built-in token server (config.auth.token.builtin) on S3 storage needs tokenSigningKey.existingSecret: one P-256 key every pod shares, which Berth does not create on shared storage (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out signing.pem)" -}}
{{- end -}}
{{- if and .Values.tokenSigningKey.existingSecret (not $builtin) -}}
{{- fail "tokenSigningKey.existingSecret is for the built-in token server: set config.auth.token.builtin too" -}}
{{- end -}}
{{- end -}}

{{/*
The registry:2 config.yml: what the chart wires (storage on the volume or the bucket, listen
address, metrics, htpasswd path, proxy, external URL, cluster), then .Values.config merged over
it; the token signing key path last, since the chart mounts the file there.
*/}}
{{- define "berth.config" -}}
{{- $http := dict "addr" (printf ":%d" (int .Values.containerPort)) -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $http "debug" (dict "addr" (printf ":%d" (int .Values.metrics.port)) "prometheus" (dict "enabled" true "path" .Values.metrics.path)) -}}
{{- end -}}
{{- if and .Values.ingress.enabled .Values.ingress.host -}}
{{- $_ := set $http "host" (printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host) -}}
{{- end -}}
{{- $storage := dict "filesystem" (dict "rootdirectory" "/var/lib/registry") -}}
{{- if eq .Values.storage.type "s3" -}}
{{- $v := .Values.storage.s3 -}}
{{- $s3 := dict "bucket" $v.bucket "region" $v.region -}}
{{- with $v.regionendpoint }}{{ $_ := set $s3 "regionendpoint" . }}{{ end -}}
{{- with $v.rootdirectory }}{{ $_ := set $s3 "rootdirectory" . }}{{ end -}}
{{- $storage = dict "s3" $s3 "redirect" (dict "disable" (not $v.redirect)) -}}
{{- end -}}
{{- $cfg := dict "version" "0.1" "storage" $storage "http" $http -}}
{{- if .Values.auth.htpasswd.enabled -}}
{{- $_ := set $cfg "auth" (dict "htpasswd" (dict "realm" .Values.auth.htpasswd.realm "path" "/etc/berth/auth/htpasswd")) -}}
{{- end -}}
{{- if and .Values.proxy.remoteurl .Values.proxy.upstreams -}}
{{- fail "proxy.remoteurl and proxy.upstreams are exclusive: set one" -}}
{{- end -}}
{{- if .Values.proxy.remoteurl -}}
{{- $_ := set $cfg "proxy" (dict "remoteurl" .Values.proxy.remoteurl) -}}
{{- else if .Values.proxy.upstreams -}}
{{- $proxy := dict "upstreams" .Values.proxy.upstreams -}}
{{- with .Values.proxy.default }}{{ $_ := set $proxy "default" . }}{{ end -}}
{{- with .Values.proxy.private }}{{ $_ := set $proxy "private" . }}{{ end -}}
{{- $_ := set $cfg "proxy" $proxy -}}
{{- end -}}
{{- if include "berth.cluster" . -}}
{{- /* cluster.node: each pod's own name, from REGISTRY_CLUSTER_NODE. */ -}}
{{- $cluster := dict "pollinterval" .Values.cluster.pollInterval "leaseduration" .Values.cluster.leaseDuration -}}
{{- with .Values.cluster.jobsNode }}{{ $_ := set $cluster "jobsnode" . }}{{ end -}}
{{- $_ := set $cfg "cluster" $cluster -}}
{{- end -}}
{{- $merged := mustMergeOverwrite $cfg (deepCopy (default (dict) .Values.config)) -}}
{{- $builtin := dig "auth" "token" "builtin" nil $merged -}}
{{- if and .Values.tokenSigningKey.existingSecret $builtin -}}
{{- $_ := set $builtin "signingkey" (include "berth.signingKeyPath" .) -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}
