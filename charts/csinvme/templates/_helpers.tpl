{{/*
Chart name, or nameOverride.
*/}}
{{- define "csinvme.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: fullnameOverride, else the release name when it already contains the chart
name, else "<release>-<chart>". Kept to 56 characters so that suffixes such as "-server" fit in 63.
*/}}
{{- define "csinvme.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the storage server's StatefulSet, Service and ServiceMonitor.
*/}}
{{- define "csinvme.server.fullname" -}}
{{- printf "%s-server" (include "csinvme.fullname" .) }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "csinvme.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object carries.
*/}}
{{- define "csinvme.labels" -}}
helm.sh/chart: {{ include "csinvme.chart" . }}
{{ include "csinvme.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: csinvme
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the release's pods; immutable once a StatefulSet exists, so never add to them.
*/}}
{{- define "csinvme.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csinvme.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Storage server objects: the common labels plus its component.
*/}}
{{- define "csinvme.server.labels" -}}
{{ include "csinvme.labels" . }}
app.kubernetes.io/component: storage-server
{{- end }}

{{- define "csinvme.server.selectorLabels" -}}
{{ include "csinvme.selectorLabels" . }}
app.kubernetes.io/component: storage-server
{{- end }}

{{/*
Image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "csinvme.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
ADDR:PORT for a listener: IPv6 addresses are bracketed. Called with (list $ port).
*/}}
{{- define "csinvme.listen" -}}
{{- $root := index . 0 }}
{{- $port := index . 1 }}
{{- $addr := $root.Values.server.listenAddress }}
{{- if contains ":" $addr }}
{{- printf "[%s]:%v" $addr $port }}
{{- else }}
{{- printf "%s:%v" $addr $port }}
{{- end }}
{{- end }}

{{/*
Address the csinvme CLI uses inside the pod to reach the management API.
*/}}
{{- define "csinvme.cliServer" -}}
{{- $addr := .Values.server.listenAddress }}
{{- if eq $addr "0.0.0.0" }}
{{- printf "127.0.0.1:%v" .Values.server.ports.management }}
{{- else if eq $addr "::" }}
{{- printf "[::1]:%v" .Values.server.ports.management }}
{{- else }}
{{- include "csinvme.listen" (list . .Values.server.ports.management) }}
{{- end }}
{{- end }}

{{/*
CSI controller (Deployment) and node plugin (DaemonSet) names.
*/}}
{{- define "csinvme.controller.fullname" -}}
{{- printf "%s-controller" (include "csinvme.fullname" .) }}
{{- end }}

{{- define "csinvme.node.fullname" -}}
{{- printf "%s-node" (include "csinvme.fullname" .) }}
{{- end }}

{{- define "csinvme.controller.labels" -}}
{{ include "csinvme.labels" . }}
app.kubernetes.io/component: csi-controller
{{- end }}

{{- define "csinvme.controller.selectorLabels" -}}
{{ include "csinvme.selectorLabels" . }}
app.kubernetes.io/component: csi-controller
{{- end }}

{{- define "csinvme.node.labels" -}}
{{ include "csinvme.labels" . }}
app.kubernetes.io/component: csi-node
{{- end }}

{{- define "csinvme.node.selectorLabels" -}}
{{ include "csinvme.selectorLabels" . }}
app.kubernetes.io/component: csi-node
{{- end }}

{{/*
Management API of the storage server as the CSI controller reaches it: the Service's DNS name.
*/}}
{{- define "csinvme.serverAddress" -}}
{{- printf "%s.%s.svc:%v" (include "csinvme.server.fullname" .) .Release.Namespace .Values.server.ports.management }}
{{- end }}

{{/*
NVMe/TCP listen address of the storage server: server.nvmeAddress, or the pod IP ($(POD_IP) is expanded
by the kubelet from the container's environment).
*/}}
{{- define "csinvme.nvmeListen" -}}
{{- $port := .Values.server.ports.nvme }}
{{- with .Values.server.nvmeAddress }}
{{- if contains ":" . }}
{{- printf "[%s]:%v" . $port }}
{{- else }}
{{- printf "%s:%v" . $port }}
{{- end }}
{{- else }}
{{- if eq $.Values.server.ipFamily "IPv6" }}
{{- printf "[$(POD_IP)]:%v" $port }}
{{- else }}
{{- printf "$(POD_IP):%v" $port }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The storage server's data directory (metadata.db, the default pool under pools/): an absolute path on the data
volume, so nothing depends on the working directory.
*/}}
{{- define "csinvme.dataDir" -}}
/var/lib/csinvme
{{- end }}

{{/*
Where a pool of server.pools has its own volume mounted. Called with the pool's name.
*/}}
{{- define "csinvme.poolDir" -}}
{{- printf "/var/lib/csinvme-pools/%s" . }}
{{- end }}

{{/*
StorageClass parameters of one class: only what the class sets in storageClasses.<class>.parameters, because a
class's parameters cannot change once it exists. Values files type numbers as floats; print them as integers.
Called with the parameters map.
*/}}
{{- define "csinvme.storageClassParameters" -}}
{{- range $key, $value := . }}
{{ $key }}: {{ ternary ($value | int64 | toString) ($value | toString) (kindIs "float64" $value) | quote }}
{{- end }}
{{- end }}
