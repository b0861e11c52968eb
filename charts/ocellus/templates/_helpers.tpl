{{/* Labels on every object of the chart. */}}
{{- define "ocellus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: ocellus
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ocellus
{{- end }}

{{/* Labels that select the operator pod; never change them (a Deployment's selector is immutable). */}}
{{- define "ocellus.selectorLabels" -}}
app.kubernetes.io/name: ocellus
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* image:tag, the tag defaulting to the chart's appVersion. Arguments: (dict "image" IMAGE-VALUES "chart" .Chart). */}}
{{- define "ocellus.image" -}}
{{ .image.repository }}:{{ .image.tag | default .chart.AppVersion }}
{{- end }}
