{{- define "slipway.labels" -}}
app.kubernetes.io/name: slipway
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
{{- define "slipway.selector" -}}
app.kubernetes.io/name: slipway
{{- end }}
