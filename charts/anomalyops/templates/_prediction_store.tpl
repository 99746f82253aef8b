{{/* ANOMALYOPS_PREDICTION_LOG: the shared PostgreSQL log's URL from its Secret, else the
     SQLite file on the line's volume. Every writer and reader of the log takes this. */}}
{{- define "anomalyops.predictionLogEnv" -}}
{{- $database := .Values.predictionStore.database -}}
- name: ANOMALYOPS_PREDICTION_LOG
{{- if $database.existingSecret }}
  valueFrom:
    secretKeyRef: {name: {{ $database.existingSecret }}, key: {{ $database.key }}}
{{- else }}
  value: {{ include "anomalyops.logDir" . }}/predictions.db
{{- end }}
{{- with .Values.predictionStore.files }}
- name: ANOMALYOPS_PREDICTION_FILES
  value: {{ . | quote }}
{{- end }}
{{- end -}}
