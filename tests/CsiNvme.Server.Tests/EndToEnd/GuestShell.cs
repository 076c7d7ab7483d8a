namespace CsiNvme.Server.Tests.EndToEnd;

/// <summary>Shell functions shared by the guest scripts (busybox sh).</summary>
internal static class GuestShell
{
    /// <summary>
    /// ns_dev NQN: waits for the namespace block device of a connected subsystem and prints it
    /// (with native multipath this is the shared head, /dev/nvmeXnY).
    /// ctrl_dev NQN [HOSTNQN]: prints the controller character device of that subsystem.
    /// section NAME CMD...: prints the command's output between @@BEGIN NAME / @@END markers.
    /// no_nvme_devices: succeeds when no NVMe namespace is attached.
    /// </summary>
    public const string Prelude = """
        ADDR=10.0.2.2
        # The helpers switch tracing off while they run so their loops and output stay readable.
        ns_dev() {
            { set +x; } 2>/dev/null
            i=0
            while [ $i -lt 300 ]; do
                for b in /sys/block/nvme*n*; do
                    [ -e "$b" ] || continue
                    name=${b##*/}
                    case "$name" in nvme*c*n*) continue ;; esac
                    if [ "$(cat "$b/device/subsysnqn" 2>/dev/null)" = "$1" ] && [ -b "/dev/$name" ]; then
                        echo "/dev/$name"
                        set -x
                        return 0
                    fi
                done
                sleep 0.1
                i=$((i + 1))
            done
            echo "no namespace block device for $1" >&2
            set -x
            return 1
        }
        ctrl_dev() {
            { set +x; } 2>/dev/null
            for c in /sys/class/nvme/nvme*; do
                [ -e "$c/subsysnqn" ] || continue
                [ "$(cat "$c/subsysnqn")" = "$1" ] || continue
                if [ -z "$2" ] || [ "$(cat "$c/hostnqn")" = "$2" ]; then
                    echo "/dev/${c##*/}"
                    set -x
                    return 0
                fi
            done
            echo "no controller for $1 $2" >&2
            set -x
            return 1
        }
        section() {
            { set +x; } 2>/dev/null
            name=$1
            shift
            echo "+ $*"
            echo "@@BEGIN $name"
            rc=0
            "$@" || rc=$?
            echo "@@END"
            set -x
            return $rc
        }
        no_nvme_devices() {
            for b in /sys/block/nvme*; do
                [ -e "$b" ] && return 1
            done
            return 0
        }
        drop_caches() {
            sync
            echo 3 > /proc/sys/vm/drop_caches
        }
        md5_of_range() {
            # md5_of_range DEV OFFSET_MIB LENGTH_MIB
            dd if="$1" bs=1M skip="$2" count="$3" 2>/dev/null | md5sum | cut -d' ' -f1
        }
        set -x

        """;
}
