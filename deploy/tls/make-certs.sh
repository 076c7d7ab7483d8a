#!/bin/sh
# Makes the management API's CA and the three certificates deploy/ mounts, and stores them as Secrets in
# csinvme-system (each with tls.crt, tls.key and ca.crt). The role of each certificate is its Common Name
# (docs/security.md). The CA's key is deleted at the end: nobody can issue more; run again to replace them all
# (then restart the storage pods and the controller, or wait up to a minute for them to read the new files).
#
#   sh deploy/tls/make-certs.sh [NAMESPACE] [DAYS]
set -eu
ns=${1:-csinvme-system}
days=${2:-3650}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"

openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -subj "/CN=csinvme management CA" -days "$days" -out ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign

issue() { # NAME COMMON-NAME EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES]
    openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$3"
        [ -z "${4:-}" ] || echo "subjectAltName=$4"
    } > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile "$1.ext" -out "$1.crt"
    kubectl -n "$ns" create secret generic "csinvme-$1-tls" --type=kubernetes.io/tls \
        --from-file=tls.crt="$1.crt" --from-file=tls.key="$1.key" --from-file=ca.crt=ca.crt \
        --dry-run=client -o yaml | kubectl apply -f -
}

svc=csinvme-server
issue server node serverAuth,clientAuth \
    "DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:*.$svc-headless.$ns.svc,DNS:localhost,IP:127.0.0.1"
issue controller csi-controller clientAuth
issue admin admin clientAuth
echo "Secrets csinvme-server-tls, csinvme-controller-tls and csinvme-admin-tls written to namespace $ns."
