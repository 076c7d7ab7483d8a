# syntax=docker/dockerfile:1
#
# CsiNvme image: one image, three programs, chosen by the first argument:
#
#   server ...   csinvme-server: NVMe/TCP target, management gRPC, Prometheus metrics (the default)
#   csi ...      csinvme-csi: the CSI driver nvme.csinvme.io (--mode controller|node|all)
#   cli ...      csinvme: the management CLI (also on PATH as `csinvme`)
#
#   docker build -t csinvme:0.1.0 .
#   docker run --rm -v csinvme-data:/var/lib/csinvme -p 4420:4420 -p 9500:9500 -p 9501:9501 csinvme:0.1.0
#   docker run --rm csinvme:0.1.0 csi --help
#   docker run --rm --network host csinvme:0.1.0 cli --server 127.0.0.1:9500 volume list
#
# Privileges: the image runs as root only because the CSI node plugin needs it (it writes
# /dev/nvme-fabrics to connect controllers, creates device nodes, runs mkfs and mount(2) into the
# kubelet's directory; Kubernetes runs it privileged). The CSI controller needs none and the chart runs
# it as UID 65532 with a read-only root file system; the storage server needs root only when its data
# directory is a host path owned by root.
#
# The .NET 10 images behind these tags are Ubuntu 24.04 (noble): Microsoft ships no Debian images for
# .NET 10. The runtime stage installs its packages with apt-get all the same.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# Restore first, from the project files alone, so the package layer is reused until a project file or
# a central package version changes. These are the three programs and every project they reference.
COPY Directory.Build.props Directory.Packages.props nuget.config .editorconfig ./
COPY src/CsiNvme.Protocol/CsiNvme.Protocol.csproj src/CsiNvme.Protocol/
COPY src/CsiNvme.Storage/CsiNvme.Storage.csproj   src/CsiNvme.Storage/
COPY src/CsiNvme.Metadata/CsiNvme.Metadata.csproj src/CsiNvme.Metadata/
COPY src/CsiNvme.Target/CsiNvme.Target.csproj     src/CsiNvme.Target/
COPY src/CsiNvme.Api/CsiNvme.Api.csproj           src/CsiNvme.Api/
COPY src/CsiNvme.Host/CsiNvme.Host.csproj         src/CsiNvme.Host/
COPY src/CsiNvme.Replication/CsiNvme.Replication.csproj src/CsiNvme.Replication/
COPY src/CsiNvme.Volumes/CsiNvme.Volumes.csproj   src/CsiNvme.Volumes/
COPY src/CsiNvme.Cluster/CsiNvme.Cluster.csproj   src/CsiNvme.Cluster/
COPY src/CsiNvme.Perf/CsiNvme.Perf.csproj         src/CsiNvme.Perf/
COPY src/CsiNvme.Server/CsiNvme.Server.csproj     src/CsiNvme.Server/
COPY src/CsiNvme.Cli/CsiNvme.Cli.csproj           src/CsiNvme.Cli/
COPY src/CsiNvme.Csi/CsiNvme.Csi.csproj           src/CsiNvme.Csi/
RUN dotnet restore src/CsiNvme.Server/CsiNvme.Server.csproj \
 && dotnet restore src/CsiNvme.Cli/CsiNvme.Cli.csproj \
 && dotnet restore src/CsiNvme.Csi/CsiNvme.Csi.csproj

# The Api and Csi projects compile ../../proto at build time.
COPY proto/ proto/
COPY src/ src/

# Framework-dependent, without an apphost: the runtime image provides ASP.NET Core, and the programs are
# started through `dotnet` so nothing depends on where the apphost looks for the runtime.
RUN dotnet publish src/CsiNvme.Server/CsiNvme.Server.csproj -c Release --no-restore \
        -p:UseAppHost=false -o /out/server \
 && dotnet publish src/CsiNvme.Cli/CsiNvme.Cli.csproj -c Release --no-restore \
        -p:UseAppHost=false -o /out/cli \
 && dotnet publish src/CsiNvme.Csi/CsiNvme.Csi.csproj -c Release --no-restore \
        -p:UseAppHost=false -o /out/csi

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime

# What the CSI node plugin runs on the host's devices:
#   e2fsprogs  mkfs.ext4, resize2fs        xfsprogs    mkfs.xfs, xfs_growfs
#   util-linux blkid (signature check before formatting), mount/umount for debugging
#   kmod       modprobe nvme-tcp in the node plugin's init container
#   nvme-cli   not used by the driver (it writes /dev/nvme-fabrics itself); `nvme list` for debugging
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        e2fsprogs xfsprogs util-linux kmod nvme-cli \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/server /opt/csinvme/server/
COPY --from=build /out/cli    /opt/csinvme/cli/
COPY --from=build /out/csi    /opt/csinvme/csi/

# Each program under its own name on PATH; `exec` keeps the program as the process the runtime signals.
RUN printf '#!/bin/sh\nexec dotnet /opt/csinvme/csi/csinvme-csi.dll "$@"\n' > /usr/local/bin/csinvme-csi \
 && printf '#!/bin/sh\nexec dotnet /opt/csinvme/cli/csinvme.dll "$@"\n' > /usr/local/bin/csinvme \
 && chmod 0755 /usr/local/bin/csinvme-csi /usr/local/bin/csinvme \
 && mkdir -p /var/lib/csinvme \
 && chown 65532:65532 /var/lib/csinvme

# The server's own default data directory is relative to the working directory; in the image it is always the
# volume /var/lib/csinvme unless --data-dir is given, however the server is started (`docker run IMAGE --backend
# memory`, `server ...`, or csinvme-server by hand in the container).
COPY --chmod=0755 <<'EOF' /usr/local/bin/csinvme-server
#!/bin/sh
for arg in "$@"; do
    case "$arg" in
        --data-dir|--data-dir=*) exec dotnet /opt/csinvme/server/CsiNvme.Server.dll "$@" ;;
    esac
done
exec dotnet /opt/csinvme/server/CsiNvme.Server.dll --data-dir /var/lib/csinvme "$@"
EOF

# The first argument picks the program; arguments that start with "-" go to the server, so
# `docker run IMAGE --backend memory` keeps working.
COPY --chmod=0755 <<'EOF' /usr/local/bin/csinvme-entrypoint
#!/bin/sh
case "$1" in
    server) shift; exec /usr/local/bin/csinvme-server "$@" ;;
    csi)    shift; exec /usr/local/bin/csinvme-csi "$@" ;;
    cli)    shift; exec /usr/local/bin/csinvme "$@" ;;
    -*|"")  exec /usr/local/bin/csinvme-server "$@" ;;
    *)      echo "csinvme-entrypoint: unknown program '$1' (server, csi or cli)" >&2; exit 64 ;;
esac
EOF

# Non-root by default: the storage server needs no privilege for file pools on its volume. The CSI node plugin,
# which connects NVMe/TCP controllers and mounts, runs as root by its pod's securityContext (docs/security.md).
USER 65532:65532
WORKDIR /var/lib/csinvme
VOLUME /var/lib/csinvme

# 4420 NVMe/TCP, 9500 management gRPC, 9501 Prometheus /metrics of the server. The management API listens on
# loopback by default (`docker exec CONTAINER csinvme ...`); to publish it, give --mgmt-listen 0.0.0.0:9500 with
# --tls-cert, --tls-key and --tls-client-ca (docs/security.md).
EXPOSE 4420 9500 9501

ENTRYPOINT ["/usr/local/bin/csinvme-entrypoint"]
CMD ["server", \
     "--data-dir", "/var/lib/csinvme", \
     "--nvme-listen", "0.0.0.0:4420", \
     "--mgmt-listen", "127.0.0.1:9500", \
     "--metrics-listen", "0.0.0.0:9501"]
