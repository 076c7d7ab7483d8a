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

{{/*
"true" when the storage pods form a cluster: etcd is deployed by the chart or given by its endpoints; empty for a
single storage server (its metadata in its data directory).
*/}}
{{- define "csinvme.cluster" -}}
{{- if or .Values.etcd.enabled .Values.etcd.endpoints }}true{{ end }}
{{- end }}

{{/*
Headless Service of the storage pods (the StatefulSet's serviceName in a cluster): a DNS name per storage node.
*/}}
{{- define "csinvme.server.headless" -}}
{{- printf "%s-headless" (include "csinvme.server.fullname" .) }}
{{- end }}

{{/*
etcd deployed by the chart: StatefulSet, headless Service (its members' DNS names), PodDisruptionBudget and
NetworkPolicy share this name.
*/}}
{{- define "csinvme.etcd.fullname" -}}
{{- printf "%s-etcd" (include "csinvme.fullname" .) }}
{{- end }}

{{- define "csinvme.etcd.labels" -}}
{{ include "csinvme.labels" . }}
app.kubernetes.io/component: etcd
{{- end }}

{{- define "csinvme.etcd.selectorLabels" -}}
{{ include "csinvme.selectorLabels" . }}
app.kubernetes.io/component: etcd
{{- end }}

{{/*
DNS name of etcd member number N (its pod's record in the headless Service). Called with (list $ N); N may be the
literal "$(POD_NAME)" suffix, see csinvme.etcd.ownHost.
*/}}
{{- define "csinvme.etcd.memberHost" -}}
{{- $root := index . 0 }}
{{- $name := include "csinvme.etcd.fullname" $root }}
{{- printf "%s-%v.%s.%s.svc" $name (index . 1) $name $root.Release.Namespace }}
{{- end }}

{{/*
DNS name of the member a pod is, from its own name ($(POD_NAME) is expanded by the kubelet in args).
*/}}
{{- define "csinvme.etcd.ownHost" -}}
{{- $name := include "csinvme.etcd.fullname" . }}
{{- printf "$(POD_NAME).%s.%s.svc" $name .Release.Namespace }}
{{- end }}

{{/*
--initial-cluster of the chart's etcd: every member's name (its pod's name) with its peer URL.
*/}}
{{- define "csinvme.etcd.initialCluster" -}}
{{- $members := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $members = append $members (printf "%s-%d=http://%s:%v" (include "csinvme.etcd.fullname" $) $i (include "csinvme.etcd.memberHost" (list $ $i)) $.Values.etcd.ports.peer) }}
{{- end }}
{{- join "," $members }}
{{- end }}

{{/*
--etcd-endpoints of the storage nodes: every member's client URL (the chart's etcd) or etcd.endpoints, so that the
client fails over between members by itself.
*/}}
{{- define "csinvme.etcdEndpoints" -}}
{{- if .Values.etcd.enabled }}
{{- $urls := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $urls = append $urls (printf "http://%s:%v" (include "csinvme.etcd.memberHost" (list $ $i)) $.Values.etcd.ports.client) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- join "," .Values.etcd.endpoints }}
{{- end }}
{{- end }}

{{/*
Wildcard listen URL of the chart's etcd on a port, in the family of server.ipFamily. Called with (list $ port).
*/}}
{{- define "csinvme.etcd.listenUrl" -}}
{{- $root := index . 0 }}
{{- if eq $root.Values.server.ipFamily "IPv6" }}
{{- printf "http://[::]:%v" (index . 1) }}
{{- else }}
{{- printf "http://0.0.0.0:%v" (index . 1) }}
{{- end }}
{{- end }}

{{/*
A pod anti-affinity term keeping pods with these selector labels apart over a topology key, merged into the
affinity the values give. Called with (dict "affinity" MAP "selector" YAML "type" required|preferred "topologyKey" KEY).
*/}}
{{- define "csinvme.antiAffinity" -}}
{{- $affinity := deepCopy (.affinity | default dict) }}
{{- $anti := get $affinity "podAntiAffinity" | default dict }}
{{- $term := dict "labelSelector" (dict "matchLabels" (fromYaml .selector)) "topologyKey" .topologyKey }}
{{- if eq .type "required" }}
{{- $_ := set $anti "requiredDuringSchedulingIgnoredDuringExecution" (append (get $anti "requiredDuringSchedulingIgnoredDuringExecution" | default list) $term) }}
{{- else }}
{{- $_ := set $anti "preferredDuringSchedulingIgnoredDuringExecution" (append (get $anti "preferredDuringSchedulingIgnoredDuringExecution" | default list) (dict "weight" 100 "podAffinityTerm" $term)) }}
{{- end }}
{{- $_ := set $affinity "podAntiAffinity" $anti }}
{{- toYaml $affinity }}
{{- end }}

{{/*
Affinity of the storage pods: the values' affinity, plus in a cluster the anti-affinity that keeps two storage
nodes (and so two replicas of a volume) off one machine. Empty when there is none.
*/}}
{{- define "csinvme.server.affinity" -}}
{{- if include "csinvme.cluster" . }}
{{- include "csinvme.antiAffinity" (dict "affinity" .Values.affinity "selector" (include "csinvme.server.selectorLabels" .) "type" .Values.cluster.antiAffinity.type "topologyKey" .Values.cluster.antiAffinity.topologyKey) }}
{{- else if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- end }}
{{- end }}

{{/*
The StorageClass parameter "replicas" a class gets when it does not set it: 3 on a cluster of 3 or more storage
nodes; empty otherwise (the driver's default, 1).
*/}}
{{- define "csinvme.defaultReplicas" -}}
{{- if and (include "csinvme.cluster" .) (ge (int .Values.replicas) 3) }}3{{ end }}
{{- end }}

{{/*
A class's parameters: what storageClasses.<class>.parameters sets, plus the default "replicas". Called with
(list $ PARAMETERS); prints a YAML map, or nothing.
*/}}
{{- define "csinvme.classParameters" -}}
{{- $root := index . 0 }}
{{- $parameters := deepCopy (index . 1 | default dict) }}
{{- with include "csinvme.defaultReplicas" $root }}
{{- if not (hasKey $parameters "replicas") }}
{{- $_ := set $parameters "replicas" (int .) }}
{{- end }}
{{- end }}
{{- include "csinvme.storageClassParameters" $parameters }}
{{- end }}

{{/*
Rules between values that values.schema.json cannot state (it checks each value's type and range, and which
values a cluster needs). Prints nothing; fails the rendering with the reason.
*/}}
{{- define "csinvme.validate" -}}
{{- /* The controller-revision-hash label (the StatefulSet's name, "-" and a 10-character hash) must fit in 63; the
etcd StatefulSet's name ("-etcd") is shorter than the server's. */}}
{{- $server := include "csinvme.server.fullname" . }}
{{- if gt (len $server) 52 }}
{{- fail (printf "the storage StatefulSet's name %q is longer than 52 characters, which Kubernetes cannot label its pods with; shorten the release name or fullnameOverride" $server) }}
{{- end }}
{{- range $class := list "block" "ext4" }}
{{- $values := index $.Values.storageClasses $class }}
{{- if and $values.enabled $values.parameters }}
{{- if and (hasKey $values.parameters "replicas") (gt (int $values.parameters.replicas) (int $.Values.replicas)) }}
{{- fail (printf "storageClasses.%s.parameters.replicas is %d, but the chart runs %d storage node%s (replicas): a volume's copies are on distinct nodes" $class (int $values.parameters.replicas) (int $.Values.replicas) (ternary "" "s" (eq (int $.Values.replicas) 1))) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.etcd.enabled .Values.etcd.networkPolicy.enabled .Values.hostNetwork (not .Values.etcd.networkPolicy.allowFrom) }}
{{- fail "hostNetwork: the storage pods reach etcd from their nodes' addresses, which etcd's NetworkPolicy cannot select by pod: list those networks in etcd.networkPolicy.allowFrom (e.g. - ipBlock: {cidr: 10.0.0.0/24}) or set etcd.networkPolicy.enabled=false" }}
{{- end }}
{{- end }}

{{/*
Lifecycle hooks of a storage node in a cluster, for rolling upgrades and evictions (docs/install.md):
- preStop drains the node through the CLI (primaries to in-sync replicas on other nodes, then replicas), at most
  cluster.drainTimeoutSeconds, and leaves a marker on the data volume saying the hook drained it;
- postStart, when the marker is there, undrains the node as soon as the server answers and removes the marker. A
  node drained by hand (no marker) stays drained when its pod restarts. The container is not running before
  postStart ends, so the pod is not ready and a rolling update does not move on. Both write what they do to the
  server's log (the output of process 1).
*/}}
{{- define "csinvme.server.lifecycle" -}}
{{- $cli := printf "csinvme --server %s" (include "csinvme.cliServer" .) }}
{{- $marker := printf "%s/.prestop-drain" (include "csinvme.dataDir" .) }}
lifecycle:
  postStart:
    exec:
      command:
        - sh
        - -c
        - |
          log=/proc/1/fd/1; [ -w "$log" ] || log=/dev/null
          [ -e {{ $marker }} ] || exit 0
          end=$(( $(date +%s) + {{ .Values.cluster.undrainTimeoutSeconds }} ))
          while :; do
            if out=$({{ $cli }} node undrain "$POD_NAME" 2>&1); then
              rm -f {{ $marker }}
              echo "postStart: node $POD_NAME undrained" >"$log"
              exit 0
            fi
            if [ "$(date +%s)" -ge "$end" ]; then
              echo "postStart: node $POD_NAME not undrained within {{ .Values.cluster.undrainTimeoutSeconds }} s: $out" | tee "$log"
              exit 1
            fi
            sleep 5
          done
  preStop:
    exec:
      command:
        - sh
        - -c
        - |
          log=/proc/1/fd/1; [ -w "$log" ] || log=/dev/null
          touch {{ $marker }}
          echo "preStop: draining node $POD_NAME (at most {{ .Values.cluster.drainTimeoutSeconds }} s)" >"$log"
          if {{ $cli }} node drain "$POD_NAME" --wait --timeout {{ .Values.cluster.drainTimeoutSeconds }}s >"$log" 2>&1; then
            echo "preStop: node $POD_NAME drained" >"$log"
          else
            echo "preStop: drain of node $POD_NAME did not finish (exit $?); stopping anyway" >"$log"
          fi
{{- end }}

{{/*
"true" when the management API uses mutual TLS: tls.enabled and a listen address that is not loopback (the server
needs no TLS on loopback, and refuses a non-loopback address without it unless --insecure).
*/}}
{{- define "csinvme.tls" -}}
{{- if and .Values.tls.enabled (not (has .Values.server.listenAddress (list "127.0.0.1" "::1"))) }}true{{ end }}
{{- end }}

{{/*
"true" when the server must be told --insecure: TLS turned off on a non-loopback listen address.
*/}}
{{- define "csinvme.insecure" -}}
{{- if and (not .Values.tls.enabled) (not (has .Values.server.listenAddress (list "127.0.0.1" "::1"))) }}true{{ end }}
{{- end }}

{{/*
Secrets of the management API's certificates (tls.crt, tls.key, ca.crt), by role. Called with (list $ role).
*/}}
{{- define "csinvme.tlsSecret" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s-tls" (include "csinvme.fullname" $root) (index . 1) }}
{{- end }}

{{/*
Where the pods mount their certificate Secret.
*/}}
{{- define "csinvme.tlsDir" -}}
/etc/csinvme/tls
{{- end }}

{{/*
DNS names of the storage server's certificate. Clients check the CA and the role node, not the name (nodes dial pod
IPs), but the names keep the certificate usable by ordinary TLS clients too.
*/}}
{{- define "csinvme.serverDnsNames" -}}
{{- $svc := include "csinvme.server.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "*.%s.%s.svc" (include "csinvme.server.headless" .) $ns) "localhost" }}
{{- toJson $names }}
{{- end }}

{{/*
"true" when the external-resizer is to call ControllerModifyVolume (csi.controller.volumeAttributesClass), else empty:
auto asks the API server whether it serves VolumeAttributesClass.
*/}}
{{- define "csinvme.volumeAttributesClass" -}}
{{- $setting := .Values.csi.controller.volumeAttributesClass | toString -}}
{{- if eq $setting "true" -}}
true
{{- else if eq $setting "auto" -}}
{{- if or (.Capabilities.APIVersions.Has "storage.k8s.io/v1/VolumeAttributesClass") (.Capabilities.APIVersions.Has "storage.k8s.io/v1beta1/VolumeAttributesClass") -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

