{{/* The objects' name: the release's when it says restart-watcher, else <release>-restart-watcher. */}}
{{- define "rw.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels on every object (those of deploy/base). */}}
{{- define "rw.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
{{- end -}}

{{/* The agent pods' labels, and the selector. */}}
{{- define "rw.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* The settings, as the agent's environment variables (docs/configuration.md). */}}
{{- define "rw.settings" -}}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .Values.otlp.endpoint | quote }}
{{- with .Values.otlp.compression }}
OTEL_EXPORTER_OTLP_COMPRESSION: {{ . | quote }}
{{- end }}
RESTART_WATCHER_LOG_FORMAT: {{ .Values.logFormat | quote }}
{{- with .Values.clusterName }}
RESTART_WATCHER_CLUSTER_NAME: {{ . | quote }}
{{- end }}
{{- if not .Values.features.events }}
RESTART_WATCHER_NO_EVENTS: "true"
{{- end }}
{{- if not .Values.features.owners }}
RESTART_WATCHER_NO_OWNER_WATCH: "true"
{{- end }}
{{- if gt (int .Values.features.previousLogs.lines) 0 }}
RESTART_WATCHER_PREVIOUS_LOGS_LINES: {{ .Values.features.previousLogs.lines | quote }}
{{- with .Values.features.previousLogs.redact }}
RESTART_WATCHER_PREVIOUS_LOGS_REDACT: {{ join "\n" . | quote }}
{{- end }}
{{- end }}
{{- with .Values.features.stormWindow }}
RESTART_WATCHER_STORM_WINDOW: {{ . | quote }}
{{- end }}
{{- if .Values.features.workloadMetrics }}
RESTART_WATCHER_WORKLOAD_METRICS: "true"
{{- end }}
{{- if not .Values.features.clusterUid }}
RESTART_WATCHER_NO_CLUSTER_UID: "true"
{{- end }}
{{- if not .Values.features.nodeUid }}
RESTART_WATCHER_NO_NODE_WATCH: "true"
{{- end }}
{{- if not .Values.features.checkpoint }}
RESTART_WATCHER_NO_CHECKPOINT: "true"
{{- end }}
{{- if .Values.features.serviceFromLabels }}
RESTART_WATCHER_SERVICE_FROM_LABELS: "true"
{{- end }}
{{- if .Values.features.oomKills }}
{{- if ne .Values.mode "daemonset" }}
{{- fail "features.oomKills reads each node's cgroups: it needs mode=daemonset" }}
{{- end }}
RESTART_WATCHER_OOM_KILLS_FROM_CGROUPS: "/host/sys/fs/cgroup"
{{- end }}
{{- if and (eq .Values.mode "deployment") .Values.leaderElection.enabled }}
RESTART_WATCHER_LEADER_ELECT: "true"
{{- with .Values.leaderElection.leaseDuration }}
RESTART_WATCHER_LEADER_ELECT_LEASE_DURATION: {{ . | quote }}
{{- end }}
{{- with .Values.leaderElection.renewDeadline }}
RESTART_WATCHER_LEADER_ELECT_RENEW_DEADLINE: {{ . | quote }}
{{- end }}
{{- with .Values.leaderElection.retryPeriod }}
RESTART_WATCHER_LEADER_ELECT_RETRY_PERIOD: {{ . | quote }}
{{- end }}
{{- end }}
{{- if ne .Values.events "all" }}
RESTART_WATCHER_EVENTS: {{ .Values.events | quote }}
{{- end }}
{{- if .Values.otlp.tls.secretName }}
OTEL_EXPORTER_OTLP_CERTIFICATE: /etc/restart-watcher/tls/ca.crt
{{- if .Values.otlp.tls.clientCertificate }}
OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: /etc/restart-watcher/tls/tls.crt
OTEL_EXPORTER_OTLP_CLIENT_KEY: /etc/restart-watcher/tls/tls.key
{{- end }}
{{- end }}
{{- range $k, $v := .Values.extraEnv }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* The settings ConfigMap's name: it changes with its content, so a change rolls the pods. */}}
{{- define "rw.settingsName" -}}
{{- printf "%s-settings-%s" (include "rw.fullname" .) (include "rw.settings" . | sha256sum | trunc 10) -}}
{{- end -}}

{{/* The agent's pod spec, for the Deployment and the DaemonSet. */}}
{{- define "rw.podSpec" -}}
serviceAccountName: {{ include "rw.fullname" . }}
automountServiceAccountToken: true
{{- if .Values.hostNetwork.enabled }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
terminationGracePeriodSeconds: 30
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq .Values.mode "daemonset" }}
tolerations:
  - operator: Exists
{{- else if .Values.tolerations }}
tolerations:
  {{- toYaml .Values.tolerations | nindent 2 }}
{{- end }}
{{- if .Values.affinity }}
affinity:
  {{- toYaml .Values.affinity | nindent 2 }}
{{- else if and (eq .Values.mode "deployment") (gt (int .Values.replicas) 1) }}
# The replicas on different nodes where possible: a node's loss takes one at most.
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "rw.selector" . | nindent 14 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: restart-watcher
    image: {{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
    {{- if ne .Values.image.pullPolicy "IfNotPresent" }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    {{- end }}
    args: ["run"]
    envFrom:
      - configMapRef:
          name: {{ include "rw.settingsName" . }}
    env:
      {{- if eq .Values.mode "daemonset" }}
      - name: NODE_NAME
        valueFrom:
          fieldRef:
            fieldPath: spec.nodeName
      {{- end }}
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      - name: POD_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      {{- if .Values.hostNetwork.enabled }}
      - name: RESTART_WATCHER_ADMIN_LISTEN
        value: {{ printf "127.0.0.1:%d" (int .Values.hostNetwork.adminPort) | quote }}
      {{- end }}
      {{- if .Values.otlp.headersSecret.name }}
      - name: OTEL_EXPORTER_OTLP_HEADERS
        valueFrom:
          secretKeyRef:
            name: {{ .Values.otlp.headersSecret.name }}
            key: {{ .Values.otlp.headersSecret.key }}
      {{- end }}
    {{- if .Values.hostNetwork.enabled }}
    livenessProbe:
      httpGet:
        host: 127.0.0.1
        path: /livez
        port: {{ .Values.hostNetwork.adminPort }}
      periodSeconds: 10
      failureThreshold: 6
    readinessProbe:
      httpGet:
        host: 127.0.0.1
        path: /readyz
        port: {{ .Values.hostNetwork.adminPort }}
      periodSeconds: 5
    {{- else }}
    ports:
      - name: admin
        containerPort: 9090
        protocol: TCP
    livenessProbe:
      httpGet:
        path: /livez
        port: admin
      periodSeconds: 10
      failureThreshold: 6
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      periodSeconds: 5
    {{- end }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    {{- if or .Values.otlp.tls.secretName .Values.features.oomKills }}
    volumeMounts:
      {{- if .Values.otlp.tls.secretName }}
      - name: otlp-tls
        mountPath: /etc/restart-watcher/tls
        readOnly: true
      {{- end }}
      {{- if .Values.features.oomKills }}
      - name: host-cgroup
        mountPath: /host/sys/fs/cgroup
        readOnly: true
      {{- end }}
    {{- end }}
{{- if or .Values.otlp.tls.secretName .Values.features.oomKills }}
volumes:
  {{- if .Values.otlp.tls.secretName }}
  - name: otlp-tls
    secret:
      secretName: {{ .Values.otlp.tls.secretName }}
  {{- end }}
  {{- if .Values.features.oomKills }}
  # The node's cgroups, read-only: the OOM-kill counters of its containers (docs/operations.md).
  - name: host-cgroup
    hostPath:
      path: /sys/fs/cgroup
      type: Directory
  {{- end }}
{{- end }}
{{- end -}}
