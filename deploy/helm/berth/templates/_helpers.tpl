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
The registry:2 config.yml: what the chart wires (storage root on the volume, listen address,
metrics, htpasswd path, proxy, external URL), then .Values.config merged over it.
*/}}
{{- define "berth.config" -}}
{{- $http := dict "addr" (printf ":%d" (int .Values.containerPort)) -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $http "debug" (dict "addr" (printf ":%d" (int .Values.metrics.port)) "prometheus" (dict "enabled" true "path" .Values.metrics.path)) -}}
{{- end -}}
{{- if and .Values.ingress.enabled .Values.ingress.host -}}
{{- $_ := set $http "host" (printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host) -}}
{{- end -}}
{{- $cfg := dict "version" "0.1" "storage" (dict "filesystem" (dict "rootdirectory" "/var/lib/registry")) "http" $http -}}
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
{{- toYaml (mustMergeOverwrite $cfg (deepCopy (default (dict) .Values.config))) -}}
{{- end -}}
