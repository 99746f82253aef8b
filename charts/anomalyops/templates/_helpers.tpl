{{/* Release-scoped name, at most 40 characters so suffixed names stay valid DNS labels. */}}
{{- define "anomalyops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "anomalyops.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "anomalyops.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* "repository@digest" when a digest pins it, else "repository:tag" (tag: appVersion). */}}
{{- define "anomalyops.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A line with lineDefaults filled in: list of (line, root) -> YAML of the merged line. */}}
{{- define "anomalyops.line" -}}
{{- $line := index . 0 -}}
{{- $root := index . 1 -}}
{{- /* A line's key replaces the default's (zero values too: no mergeOverwrite); the
     transformer and predictionLog blocks are merged one level deep. */ -}}
{{- $merged := deepCopy $root.Values.lineDefaults -}}
{{- range $key, $value := deepCopy $line -}}
{{- if and (kindIs "map" $value) (has $key (list "transformer" "predictionLog")) -}}
{{- $inner := index $merged $key -}}
{{- range $k, $v := $value }}{{ $_ := set $inner $k $v }}{{ end -}}
{{- else -}}
{{- $_ := set $merged $key $value -}}
{{- end -}}
{{- end -}}
{{- if gt (int $merged.minReplicas) (int $merged.maxReplicas) -}}
{{- fail (printf "lines[%s]: minReplicas %v is above maxReplicas %v" $line.name $merged.minReplicas $merged.maxReplicas) -}}
{{- end -}}
{{- if gt (int $merged.transformer.minReplicas) (int $merged.transformer.maxReplicas) -}}
{{- fail (printf "lines[%s].transformer: minReplicas %v is above maxReplicas %v" $line.name $merged.transformer.minReplicas $merged.transformer.maxReplicas) -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* Knative 1.21 refuses pod fields it disables by default (knative/serving
     pkg/apis/config/features.go defaultFeaturesConfig, enforced by
     pkg/apis/serving/fieldmask.go). In Knative mode a line renders only when
     serving.knativeFeatures lists every flag its pods need; platform/knative/ enables them.
     list of (root, merged line) -> nothing, or fail naming the missing flags. */}}
{{- define "anomalyops.knativeNeeds" -}}
{{- $root := index . 0 -}}
{{- $line := index . 1 -}}
{{- if eq $root.Values.serving.deploymentMode "Knative" -}}
{{- /* the transformer: pod securityContext, the storage initializer KServe adds for
     storageUris and, with a SQLite log, the log's PVC (written) */ -}}
{{- $needs := list "kubernetes.podspec-securitycontext" "kubernetes.podspec-init-containers" -}}
{{- if not $root.Values.predictionStore.database.existingSecret }}{{ $needs = concat $needs (list "kubernetes.podspec-persistent-volume-claim" "kubernetes.podspec-persistent-volume-write") }}{{ end -}}
{{- if $line.nodeSelector }}{{ $needs = append $needs "kubernetes.podspec-nodeselector" }}{{ end -}}
{{- if $line.tolerations }}{{ $needs = append $needs "kubernetes.podspec-tolerations" }}{{ end -}}
{{- if and $root.Values.topologySpread (or (gt (int $line.maxReplicas) 1) (gt (int $line.transformer.maxReplicas) 1)) }}{{ $needs = append $needs "kubernetes.podspec-topologyspreadconstraints" }}{{ end -}}
{{- $missing := list -}}
{{- range $needs }}{{ if not (has . $root.Values.serving.knativeFeatures) }}{{ $missing = append $missing . }}{{ end }}{{ end -}}
{{- if $missing -}}
{{- fail (printf "lines[%s]: Knative mode needs config-features %s (Knative 1.21 disables them by default, pkg/apis/config/features.go): apply platform/knative/config-features.yaml and list them in serving.knativeFeatures, or use serving.deploymentMode Standard" $line.name (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A line's InferenceService name, release-prefixed so two releases in one namespace never
     collide: "<fullname>-<line>", at most 46 characters. KServe names the components'
     Deployments, Services and Knative Services "<name>-predictor" / "<name>-transformer"
     (pkg/constants/constants.go PredictorServiceName, TransformerServiceName) and labels
     every pod serving.kserve.io/inferenceservice=<name>: DNS labels and label values of at
     most 63 characters. The chart's own "<name>-drift" and "<name>-prune" CronJobs must stay
     within 52 (CronJob names: the Job controller appends 11 characters).
     list of (line name, root) -> the name, or fail. */}}
{{- define "anomalyops.lineName" -}}
{{- $lineName := index . 0 -}}
{{- $root := index . 1 -}}
{{- $name := printf "%s-%s" (include "anomalyops.fullname" $root) $lineName -}}
{{- if gt (len $name) 46 -}}
{{- fail (printf "lines[%s]: the InferenceService name %q is %d characters, above 46 (KServe's \"-transformer\" Services and the chart's \"-drift\" CronJob must stay valid): use a shorter release or line name" $lineName $name (len $name)) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* A line's ingress host: `<hostname><suffix>.<domain>`, where hostname defaults to
     `<InferenceService>-<namespace>`, KServe's own default (config/configmap/
     inferenceservice.yaml v0.20.0 domainTemplate "{{ .Name }}-{{ .Namespace }}..."), so
     two releases or namespaces never claim one host. Call with (list $line $root SUFFIX). */}}
{{- define "anomalyops.lineHost" -}}
{{- $line := index . 0 -}}
{{- $root := index . 1 -}}
{{- $suffix := index . 2 -}}
{{- $label := printf "%s%s" ($line.hostname | default (printf "%s-%s" (include "anomalyops.lineName" (list $line.name $root)) $root.Release.Namespace)) $suffix -}}
{{- if gt (len $label) 63 -}}
{{- fail (printf "lines[%s]: the ingress host label %q is %d characters, above 63 (a DNS label): set lines[].hostname" $line.name $label (len $label)) -}}
{{- end -}}
{{- printf "%s.%s" $label $root.Values.ingress.domain -}}
{{- end -}}

{{- define "anomalyops.mlflowUri" -}}
{{- printf "http://%s-mlflow.%s.svc.cluster.local:%v" (include "anomalyops.fullname" .) .Release.Namespace .Values.mlflow.port -}}
{{- end -}}

{{/* The prediction log's mount point; transformer writes, drift check reads. */}}
{{- define "anomalyops.logDir" -}}/var/lib/anomalyops/predictions{{- end -}}

{{- define "anomalyops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "anomalyops.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Object-store credentials and endpoint, from the named Secret only. */}}
{{- define "anomalyops.storageEnv" -}}
{{- with .Values.storage.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: AWS_SECRET_ACCESS_KEY}
{{- end }}
{{- with .Values.storage.s3Endpoint }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "anomalyops.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Topology spread for a component that may run more than one replica: the values'
     constraints (soft by default), each selecting that component's own pods; a new
     ReplicaSet's pods are spread among themselves (matchLabelKeys pod-template-hash).
     list of (root, selector labels, max replicas) -> a pod-spec fragment or nothing. */}}
{{- define "anomalyops.topologySpread" -}}
{{- $root := index . 0 -}}
{{- $selector := index . 1 -}}
{{- if and $root.Values.topologySpread (gt (int (index . 2)) 1) -}}
{{- $constraints := list -}}
{{- range $root.Values.topologySpread -}}
{{- $constraints = append $constraints (merge (dict "labelSelector" (dict "matchLabels" $selector) "matchLabelKeys" (list "pod-template-hash")) (deepCopy .)) -}}
{{- end -}}
topologySpreadConstraints:
{{- toYaml $constraints | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Knative mode: requests and limits of the queue-proxy sidecar Knative adds to every
     pod, per component. Knative 1.21 reads them from the revision's annotations
     (knative/serving pkg/apis/serving/register.go QueueSidecarCPUResourceRequestAnnotationKey
     and siblings; pkg/reconciler/revision/resources/queue.go createQueueResources; the
     resource-percentage annotation is deprecated there). KServe 0.20 copies a component's
     `annotations` onto its Knative revision template (components/predictor.go
     buildObjectMeta, transformer.go objectMeta; reconcilers/knative/ksvc_reconciler.go). */}}
{{- define "anomalyops.queueProxyAnnotations" -}}
{{- if eq .Values.serving.deploymentMode "Knative" -}}
{{- $r := .Values.serving.queueProxy.resources -}}
annotations:
  queue.sidecar.serving.knative.dev/cpu-resource-request: {{ $r.requests.cpu | quote }}
  queue.sidecar.serving.knative.dev/memory-resource-request: {{ $r.requests.memory | quote }}
  queue.sidecar.serving.knative.dev/cpu-resource-limit: {{ $r.limits.cpu | quote }}
  queue.sidecar.serving.knative.dev/memory-resource-limit: {{ $r.limits.memory | quote }}
{{- end -}}
{{- end -}}

{{/* An Ingress's annotations: the chart's, then ingress.annotations. With the cluster's
     authentication on (ingress-nginx `auth-url`), `auth-response-headers` always carries
     review.userHeader: ingress-nginx then sets that header from the auth server's answer
     (`proxy_set_header '<header>' $authHeaderN`, internal/ingress/controller/template/
     template.go buildAuthResponseHeaders), replacing whatever the client sent, and nginx
     drops it when the answer has none (an empty value is not passed). Without auth-url the
     header is stripped controller-wide (platform/values/ingress-nginx.yaml proxySetHeaders).
     list of (root, chart annotations) -> YAML mapping. */}}
{{- define "anomalyops.ingressAnnotations" -}}
{{- $root := index . 0 -}}
{{- $annotations := merge (deepCopy ($root.Values.ingress.annotations | default dict)) (index . 1) -}}
{{- if hasKey $annotations "nginx.ingress.kubernetes.io/auth-url" -}}
{{- $key := "nginx.ingress.kubernetes.io/auth-response-headers" -}}
{{- $headers := list -}}
{{- range (splitList "," (get $annotations $key)) }}{{ with trim . }}{{ $headers = append $headers . }}{{ end }}{{ end -}}
{{- $wanted := $root.Values.review.userHeader -}}
{{- $present := false -}}
{{- range $headers }}{{ if eq (lower .) (lower $wanted) }}{{ $present = true }}{{ end }}{{ end -}}
{{- if not $present }}{{ $headers = append $headers $wanted }}{{ end -}}
{{- $_ := set $annotations $key (join "," $headers) -}}
{{- end -}}
{{- toYaml $annotations -}}
{{- end -}}

{{/* MLflow's basic-auth login from a Secret (keys username, password) as the MLflow
     client reads it. list of (root, Secret name) -> env entries. */}}
{{- define "anomalyops.mlflowLogin" -}}
{{- $secret := index . 1 -}}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: username}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: password}
{{- end -}}
