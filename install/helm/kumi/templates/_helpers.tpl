{{/* Names and labels shared by every template. */}}

{{- define "kumi.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kumi.labels" -}}
app.kubernetes.io/name: kumi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* kumi.selector: labels selecting one component's pods. Call with (list $ "component"). */}}
{{- define "kumi.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: kumi
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "kumi.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kumi.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-keys" (include "kumi.fullname" .)) -}}
{{- end -}}

{{/* Open Match addresses kumi talks to: the embedded core, the open-match dependency or external ones. */}}
{{- define "kumi.om.addr" -}}
{{- $root := index . 0 -}}{{- $svc := index . 1 -}}
{{- $ports := dict "frontend" 50504 "backend" 50505 "query" 50503 -}}
{{- if $root.Values.openmatch.embedded -}}
{{ include "kumi.fullname" $root }}-openmatch.{{ $root.Release.Namespace }}.svc:{{ get $ports $svc }}
{{- else if (index $root.Values "open-match").enabled -}}
open-match-{{ $svc }}.{{ $root.Release.Namespace }}.svc:{{ get $ports $svc }}
{{- else -}}
{{ required (printf "openmatch.external.%s: set it, or turn on openmatch.embedded or open-match.enabled" $svc) (get $root.Values.openmatch.external $svc) }}
{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root (distroless nonroot user), seccomp RuntimeDefault. */}}
{{- define "kumi.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: read-only root filesystem, no capabilities, no privilege escalation. */}}
{{- define "kumi.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kumi.scrapeAnnotations" -}}
{{- if .Values.metrics.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{- define "kumi.commonEnv" -}}
- name: KUMI_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Validation that values.schema.json cannot express. */}}
{{- define "kumi.validate" -}}
{{- if and .Values.openmatch.embedded (index .Values "open-match").enabled -}}
{{- fail "openmatch.embedded and open-match.enabled are both on: pick one Open Match core (set openmatch.embedded=false to use the open-match chart)" -}}
{{- end -}}
{{- if and (not .Values.frontend.jwt.jwksUrl) (not .Values.frontend.jwt.publicKeys) -}}
{{- fail "frontend.jwt.jwksUrl or frontend.jwt.publicKeys must be set: the frontend admits only players whose tokens it can verify (your login service's JWKS URL)" -}}
{{- end -}}
{{- if and (gt (int .Values.director.replicas) 1) (not .Values.director.leaderElection.enabled) -}}
{{- fail "director.replicas > 1 needs director.leaderElection.enabled: two directors without a Lease would place the same tickets" -}}
{{- end -}}
{{- end -}}

{{/* kumi.np.metrics: a NetworkPolicy ingress rule letting Prometheus scrape /metrics. */}}
{{- define "kumi.np.metrics" -}}
{{- if .Values.metrics.enabled }}
# Prometheus scrapes /metrics from wherever it runs.
- ports:
    - {port: {{ .Values.metrics.port }}, protocol: TCP}
{{- end }}
{{- end -}}

{{/* kumi.tls.core: whether the calls to Open Match use TLS (TLS on and the embedded core, whose
certificates the chart knows; a real or external core keeps its own TLS settings, set through
extraArgs). */}}
{{- define "kumi.tls.core" -}}
{{- if and .Values.tls.enabled .Values.openmatch.embedded }}true{{ end -}}
{{- end -}}

{{/* kumi.tls.secret: the Secret holding one TLS identity (frontend, openmatch, openmatchClient or
director): the Certificate's secret with cert-manager, else the one the user names. Call with
(list $ "director"). */}}
{{- define "kumi.tls.secret" -}}
{{- $root := index . 0 -}}{{- $who := index . 1 -}}
{{- if eq $root.Values.tls.source "certManager" -}}
{{ include "kumi.fullname" $root }}-{{ $who | kebabcase }}-tls
{{- else -}}
{{ required (printf "tls.secrets.%s: name the Secret (tls.crt, tls.key, ca.crt) or use tls.source=certManager" $who) (get $root.Values.tls.secrets $who) }}
{{- end -}}
{{- end -}}

{{/* kumi.tls.omClientArgs: the flags (prefix om-tls- or query-tls-) presenting the client
certificate to the embedded core and verifying the core against its CA. */}}
{{- define "kumi.tls.omClientArgs" -}}
{{- $prefix := index . 1 -}}
- -{{ $prefix }}cert-file=/etc/kumi/tls/openmatch-client/tls.crt
- -{{ $prefix }}key-file=/etc/kumi/tls/openmatch-client/tls.key
- -{{ $prefix }}ca-file=/etc/kumi/tls/openmatch-client/ca.crt
{{- end -}}

{{/* kumi.tls.omClientVolume: the volume of the core's client certificate. */}}
{{- define "kumi.tls.omClientVolume" -}}
- name: openmatch-client-tls
  secret:
    secretName: {{ include "kumi.tls.secret" (list . "openmatchClient") }}
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
{{- end -}}
