{{- define "ballast.name" -}}ballast-operator{{- end -}}
{{- define "ballast.fullname" -}}{{ .Release.Name }}-operator{{- end -}}
{{- define "ballast.labels" -}}
app.kubernetes.io/name: ballast-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ballast
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "ballast.selectorLabels" -}}
app.kubernetes.io/name: ballast-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "ballast.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
