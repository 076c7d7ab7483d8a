# syntax=docker/dockerfile:1
#
# CsiNvme storage server image: csinvme-server (NVMe/TCP target, management gRPC, Prometheus metrics)
# and the csinvme CLI on PATH.
#
#   docker build -t csinvme:0.1.0 .
#   docker run --rm -v csinvme-data:/var/lib/csinvme -p 4420:4420 -p 9500:9500 -p 9501:9501 csinvme:0.1.0
#
# The .NET 10 images behind these tags are Ubuntu 24.04 (noble): Microsoft ships no Debian images for
# .NET 10. The runtime stage installs its packages with apt-get all the same.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# Restore first, from the project files alone, so the package layer is reused until a project file or
# a central package version changes.
COPY Directory.Build.props Directory.Packages.props nuget.config .editorconfig ./
COPY src/CsiNvme.Protocol/CsiNvme.Protocol.csproj src/CsiNvme.Protocol/
COPY src/CsiNvme.Storage/CsiNvme.Storage.csproj   src/CsiNvme.Storage/
COPY src/CsiNvme.Metadata/CsiNvme.Metadata.csproj src/CsiNvme.Metadata/
COPY src/CsiNvme.Target/CsiNvme.Target.csproj     src/CsiNvme.Target/
COPY src/CsiNvme.Api/CsiNvme.Api.csproj           src/CsiNvme.Api/
COPY src/CsiNvme.Server/CsiNvme.Server.csproj     src/CsiNvme.Server/
COPY src/CsiNvme.Cli/CsiNvme.Cli.csproj           src/CsiNvme.Cli/
RUN dotnet restore src/CsiNvme.Server/CsiNvme.Server.csproj \
 && dotnet restore src/CsiNvme.Cli/CsiNvme.Cli.csproj

# The Api project compiles ../../proto at build time.
COPY proto/ proto/
COPY src/ src/

# Framework-dependent, without an apphost: the runtime image provides ASP.NET Core, and both programs
# are started through `dotnet` so nothing depends on where the apphost looks for the runtime.
RUN dotnet publish src/CsiNvme.Server/CsiNvme.Server.csproj -c Release --no-restore \
        -p:UseAppHost=false -o /out/server \
 && dotnet publish src/CsiNvme.Cli/CsiNvme.Cli.csproj -c Release --no-restore \
        -p:UseAppHost=false -o /out/cli

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime

# nvme-cli: for the node plugin to come (nvme connect/disconnect) and for debugging from inside the pod.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nvme-cli \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/server /opt/csinvme/server/
COPY --from=build /out/cli    /opt/csinvme/cli/
RUN printf '#!/bin/sh\nexec dotnet /opt/csinvme/cli/csinvme.dll "$@"\n' > /usr/local/bin/csinvme \
 && chmod 0755 /usr/local/bin/csinvme \
 && mkdir -p /var/lib/csinvme

# Root on purpose: the node plugin that will share this image needs it (nvme connect, mounts), and
# the data directory is a host path or a volume owned by root.
USER root
WORKDIR /var/lib/csinvme
VOLUME /var/lib/csinvme

# 4420 NVMe/TCP, 9500 management gRPC (HTTP/2 cleartext), 9501 Prometheus /metrics.
EXPOSE 4420 9500 9501

# Exec form so the server is PID 1 and receives SIGTERM itself (it shuts down gracefully on it).
ENTRYPOINT ["dotnet", "/opt/csinvme/server/CsiNvme.Server.dll", \
            "--data-dir", "/var/lib/csinvme", \
            "--nvme-listen", "0.0.0.0:4420", \
            "--mgmt-listen", "0.0.0.0:9500", \
            "--metrics-listen", "0.0.0.0:9501"]
