#!/usr/bin/env bash
# Builds the Linux guest used by the end-to-end tests: the Debian cloud kernel and an
# initramfs with busybox, nvme-cli, fio, e2fsprogs and the NVMe/TCP host and target modules.
#
#   tests/guest/build-guest.sh [--variant default|trixie] [OUTDIR]
#
# Variants differ only in the kernel; the userland is this machine's (Debian 12) either way:
#   default  Debian 12's cloud kernel (6.1), from this machine's apt sources; OUTDIR defaults to <repo>/.guest.
#   trixie   Debian 13's cloud kernel (6.12: NVMe in-band authentication (DH-HMAC-CHAP) and NVMe/TCP TLS, which
#            6.1's cloud build lacks), downloaded with apt-get through a trixie source list and package lists of
#            the build's own (this machine's apt configuration and packages are not touched); OUTDIR defaults to
#            <repo>/.guest-trixie. For NVMe/TCP TLS it adds Debian 13's nvme-cli (12's cannot `connect --tls`),
#            tlshd (ktls-utils, the handshake daemon the kernel calls) and keyctl, with their own Debian 13 libraries
#            and loader under /opt/trixie, run through wrappers: nvme-tls, tlshd, keyctl.
#
# Outputs OUTDIR/vmlinuz, OUTDIR/initramfs.cpio.gz and OUTDIR/kernel-version. The work is
# skipped when those exist and are newer than this script, so calling it from every test run
# is cheap. A run needs root only when packages are missing (apt-get) — CI runs as root.
set -euo pipefail

script_path="$(readlink -f "${BASH_SOURCE[0]}")"
repo_root="$(cd "$(dirname "$script_path")/../.." && pwd)"
variant=default
if [[ "${1:-}" == "--variant" ]]; then
    variant="${2:?--variant needs a name}"
    shift 2
fi
case "$variant" in
    default) default_out="$repo_root/.guest" ;;
    trixie) default_out="$repo_root/.guest-trixie" ;;
    *) echo "build-guest: unknown variant $variant (default, trixie)" >&2; exit 2 ;;
esac
out_dir="${1:-$default_out}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

up_to_date() {
    [[ -s "$out_dir/vmlinuz" && -s "$out_dir/initramfs.cpio.gz" && -s "$out_dir/kernel-version" \
       && "$out_dir/vmlinuz" -nt "$script_path" && "$out_dir/initramfs.cpio.gz" -nt "$script_path" ]]
}
if up_to_date; then
    echo "build-guest: up to date in $out_dir ($variant)"
    exit 0
fi

# Several test processes may ask for the image at once: one builds, the others wait for it.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$out_dir/.build.lock"
    flock 9
    if up_to_date; then
        echo "build-guest: up to date in $out_dir ($variant)"
        exit 0
    fi
fi

log() { echo "build-guest: $*" >&2; }

apt_updated=0
apt_update_once() {
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        apt_updated=1
    fi
}

# Host tools: qemu runs the guest; the rest are copied into the initramfs from this machine.
packages=(qemu-system-x86 busybox-static nvme-cli fio e2fsprogs util-linux cpio kmod gzip)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_update_once
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

work="$out_dir/work"
rm -rf "$work" "$out_dir/apt"
mkdir -p "$work/deb"
# apt drops privileges to _apt for downloads; a world-writable directory avoids its warning.
chmod 0777 "$work/deb"

# apt options that read packages from somewhere else than this machine's sources (the trixie variant), empty for
# the default kernel.
apt_source=()
if [[ "$variant" == trixie ]]; then
    # Debian 13 lists and caches of this build only: apt-get update and download read and write nothing of the
    # machine's own apt state, so nothing is ever installed or upgraded from trixie.
    apt_dir="$out_dir/apt"
    mkdir -p "$apt_dir"/{sources,lists/partial,cache/archives/partial}
    cat >"$apt_dir/sources/trixie.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    chmod -R a+rwX "$apt_dir"
    apt_source=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$apt_dir/sources"
                -o "Dir::State::lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Dir::State::status=/dev/null
                -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false)
    log "apt-get update (trixie lists in $apt_dir)"
    apt-get "${apt_source[@]}" update -q >&2
    apt_updated=1
fi

# The meta package names the versioned kernel image package of the current point release.
kernel_pkg_of_meta() {
    apt-cache "${apt_source[@]}" depends linux-image-cloud-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
kernel_pkg="$(kernel_pkg_of_meta || true)"
if [[ -z "$kernel_pkg" ]]; then
    apt_update_once
    kernel_pkg="$(kernel_pkg_of_meta || true)"
fi
[[ -n "$kernel_pkg" ]] || { log "cannot resolve linux-image-cloud-amd64"; exit 1; }

if ! (cd "$work/deb" && apt-get "${apt_source[@]}" download -q "$kernel_pkg" >&2); then
    # Stale package lists name a version the mirror no longer has: refresh them and resolve again.
    [[ $apt_updated -eq 0 ]] || exit 1
    apt_update_once
    kernel_pkg="$(kernel_pkg_of_meta)"
    (cd "$work/deb" && apt-get "${apt_source[@]}" download -q "$kernel_pkg" >&2)
fi
kver="${kernel_pkg#linux-image-}"
log "kernel package $kernel_pkg ($variant)"
deb="$(ls "$work"/deb/*.deb | head -n1)"
kroot="$work/kernel"
dpkg-deb -x "$deb" "$kroot"
[[ -f "$kroot/boot/vmlinuz-$kver" ]] || { log "no vmlinuz-$kver in $deb"; exit 1; }
# Debian 13 ships modules under /usr/lib only (merged /usr); depmod and modprobe -d look under lib/.
if [[ -d "$kroot/usr/lib/modules" && ! -e "$kroot/lib" ]]; then
    ln -s usr/lib "$kroot/lib"
fi
kmods="$kroot/lib/modules/$kver"
# The package ships no modules.dep (its postinst makes it); resolve dependencies ourselves.
depmod -b "$kroot" "$kver"

root="$work/root"
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib/x86_64-linux-gnu,usr/lib64,proc,sys,dev,tmp,run,mnt,etc,root,var}
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

# Copies a file to the same path inside the image, dereferencing symlinks; library paths are
# canonicalised so /lib/... and /usr/lib/... land in one place behind the merged-/usr links.
copy_file() {
    local src="$1" dst_name="${2:-$1}"
    local dir
    dir="$(readlink -f "$(dirname "$dst_name")")"
    mkdir -p "$root$dir"
    cp -L --preserve=mode "$src" "$root$dir/$(basename "$dst_name")"
}

copy_binary_with_libs() {
    local bin="$1"
    copy_file "$bin"
    local lib
    # ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
    while read -r lib; do
        [[ -n "$lib" && -e "$lib" ]] || continue
        [[ -e "$root$(readlink -f "$(dirname "$lib")")/$(basename "$lib")" ]] && continue
        copy_file "$lib"
    done < <(ldd "$bin" 2>/dev/null | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }')
}

# busybox first, so real tools copied afterwards replace its applet links.
cp /bin/busybox "$root/usr/bin/busybox"
for applet in $("$root/usr/bin/busybox" --list-full); do
    [[ -e "$root/$applet" || -L "$root/$applet" ]] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -s /usr/bin/busybox "$root/$applet"
done

tools=(/usr/sbin/nvme /usr/bin/fio
       /usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/resize2fs /usr/sbin/tune2fs /usr/sbin/dumpe2fs
       /usr/sbin/debugfs /usr/sbin/blkid /usr/sbin/blkdiscard /usr/bin/kmod)
for t in "${tools[@]}"; do
    if [[ -x "$t" ]]; then
        rm -f "$root$t"
        copy_binary_with_libs "$t"
    else
        log "warning: $t not found, guest will use busybox's applet if any"
    fi
done
for alias in mkfs.ext4 mkfs.ext3 mkfs.ext2; do ln -sf mke2fs "$root/usr/sbin/$alias"; done
for alias in fsck.ext4 fsck.ext3 fsck.ext2; do ln -sf e2fsck "$root/usr/sbin/$alias"; done
# kmod's modprobe reads the binary indexes depmod writes; busybox's applets stay as fallback.
for alias in modprobe insmod rmmod lsmod modinfo depmod; do
    rm -f "$root/usr/sbin/$alias" "$root/sbin/$alias"
    ln -s /usr/bin/kmod "$root/usr/sbin/$alias"
done
# The dynamic loader is named by an absolute path in every ELF header.
copy_file /lib64/ld-linux-x86-64.so.2

# Kernel modules (what is built in, e.g. nvme-core and ext4 in the cloud kernel, is skipped).
# DH-HMAC-CHAP (6.12) needs the Diffie-Hellman and HMAC/SHA-2 crypto modules: the kernel asks for them by crypto
# name when a host or nvmet first authenticates, which works once they are in the image with their aliases.
wanted_modules=(configfs virtio_pci virtio_net virtio_blk loop
                nvme-core nvme-fabrics nvme-tcp nvmet nvmet-tcp nvme-auth nvme-keyring
                dh_generic hmac sha256_generic sha512_generic
                ext4 crc32c_generic crc32c-intel libcrc32c af_packet)
# NVMe/TCP TLS (trixie): the host hands the socket to kernel TLS (tls.ko) once tlshd finished the handshake, which
# asks the crypto API for gcm(aes) (loaded by alias on first use; TCG's CPU may have no AES-NI).
if [[ "$variant" == trixie ]]; then
    wanted_modules+=(tls gcm ghash-generic ctr aes_generic aesni_intel ghash-clmulni-intel)
fi
module_files=()
for m in "${wanted_modules[@]}"; do
    deps="$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null || true)"
    if [[ -z "$deps" ]]; then
        log "module $m: not found (built in or absent)"
        continue
    fi
    while read -r kind path _; do
        [[ "$kind" == insmod ]] && module_files+=("$path")
    done <<<"$deps"
done
dst_mods="$root/lib/modules/$kver"
mkdir -p "$dst_mods"
for f in $(printf '%s\n' "${module_files[@]}" | sort -u); do
    rel="${f#"$kmods"/}"
    mkdir -p "$dst_mods/$(dirname "$rel")"
    cp "$f" "$dst_mods/$rel"
done
cp "$kmods"/modules.builtin* "$kmods"/modules.order "$dst_mods/" 2>/dev/null || true
# Debian 13 compresses modules with xz; Debian 12's kmod in the image hands them to the kernel as they are, which
# fails with "Invalid ELF header magic" for some (tls among them, which NVMe/TCP TLS needs), so they go in unpacked.
find "$dst_mods" -name '*.ko.xz' -exec xz -d {} +
find "$dst_mods" -name '*.ko.zst' -exec zstd -q -d --rm {} +
depmod -b "$root" "$kver"
log "modules: $(find "$dst_mods" -name '*.ko*' | wc -l) files"

# Debian 13 userland for NVMe/TCP TLS (trixie): nvme-cli 2.x with --tls, tlshd and keyctl need Debian 13's libc, so
# they run with their own loader and libraries from /opt/trixie and never mix with the Debian 12 tools above.
if [[ "$variant" == trixie ]]; then
    tls_pkgs=(nvme-cli ktls-utils keyutils)
    mapfile -t tls_deps < <(apt-cache "${apt_source[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "${tls_pkgs[@]}" 2>/dev/null | grep -E '^[a-z0-9]' | sort -u)
    mkdir -p "$work/tlsdeb" && chmod 0777 "$work/tlsdeb"
    log "trixie TLS userland: ${#tls_deps[@]} packages"
    (cd "$work/tlsdeb" && apt-get "${apt_source[@]}" download -q "${tls_deps[@]}" >&2)
    troot="$work/trixie-root"
    mkdir -p "$troot"
    for d in "$work"/tlsdeb/*.deb; do dpkg-deb -x "$d" "$troot"; done
    opt="$root/opt/trixie"
    mkdir -p "$opt/lib" "$opt/bin"
    # Shared libraries only (no data, docs or maintainer scripts), flattened into one directory for --library-path.
    for f in "$troot"/usr/lib/x86_64-linux-gnu/*.so*; do
        [[ -e "$f" ]] && cp -L "$f" "$opt/lib/"
    done
    cp -L "$troot/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$opt/lib/ld-linux-x86-64.so.2"
    cp "$troot/usr/sbin/nvme" "$opt/bin/nvme"
    cp "$troot/usr/sbin/tlshd" "$opt/bin/tlshd"
    cp "$troot/usr/bin/keyctl" "$opt/bin/keyctl" 2>/dev/null || cp "$troot/bin/keyctl" "$opt/bin/keyctl"
    for tool in nvme tlshd keyctl; do
        name="$tool"; [[ "$tool" == nvme ]] && name=nvme-tls
        printf '#!/bin/sh\nexec /opt/trixie/lib/ld-linux-x86-64.so.2 --library-path /opt/trixie/lib /opt/trixie/bin/%s "$@"\n' \
            "$tool" >"$root/usr/sbin/$name"
        chmod 0755 "$root/usr/sbin/$name"
    done
    log "trixie TLS userland: $(du -sh "$opt" | cut -f1) in /opt/trixie"
fi

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
EOF
echo guest >"$root/etc/hostname"
mkdir -p "$root/etc/nvme"

cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 of the test guest: mount the pseudo filesystems, load the NVMe/TCP modules, bring up
# the QEMU user-mode network, run /run.sh (added per run) and power off. The exit code of
# /run.sh is printed as CSINVME-GUEST-EXIT=<code> for the host side to read.
export PATH=/usr/sbin:/usr/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "CSINVME-GUEST-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in configfs af_packet virtio_pci virtio_net virtio_blk loop crc32c-intel crc32c_generic \
         nvme-fabrics nvme-tcp nvmet nvmet-tcp dh_generic hmac sha256_generic sha512_generic tls; do
    modprobe -q "$m" 2>/dev/null || true
done
grep -q configfs /proc/filesystems && mount -t configfs configfs /sys/kernel/config
hostname guest
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
else
    echo "init: no eth0"
fi
cd /tmp
rc=127
if [ -f /run.sh ]; then
    echo "CSINVME-GUEST-RUN uptime=$(cut -d' ' -f1 /proc/uptime)"
    sh -e /run.sh
    rc=$?
else
    echo "init: no /run.sh"
fi
if [ "$rc" != 0 ]; then
    # Kernel messages since userspace started: connect errors and I/O errors show up here.
    echo "----- dmesg (since /init, tail) -----"
    dmesg | sed -n '/Run \/init as init process/,$p' | tail -n 40
    echo "------------------------"
fi
sync
echo "CSINVME-GUEST-EXIT=$rc"
poweroff -f
# poweroff failing would leave PID 1 running forever; the sysrq path always stops the VM.
echo o >/proc/sysrq-trigger
sleep 5
EOF
chmod 0755 "$root/init"

log "packing initramfs ($(du -sh "$root" | cut -f1) unpacked)"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) \
    | gzip -6 >"$out_dir/initramfs.cpio.gz.tmp"
cp "$kroot/boot/vmlinuz-$kver" "$out_dir/vmlinuz.tmp"
echo "$kver" >"$out_dir/kernel-version"
echo "$variant" >"$out_dir/variant"
mv "$out_dir/vmlinuz.tmp" "$out_dir/vmlinuz"
mv "$out_dir/initramfs.cpio.gz.tmp" "$out_dir/initramfs.cpio.gz"
rm -rf "$work" "$out_dir/apt"
log "done: $out_dir/vmlinuz $out_dir/initramfs.cpio.gz ($(du -h "$out_dir/initramfs.cpio.gz" | cut -f1))"
