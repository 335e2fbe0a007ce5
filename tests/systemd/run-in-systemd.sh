#!/bin/bash
# run-in-systemd.sh - run a test script inside a throw-away container that
# boots a real systemd (Debian bookworm, systemd 252 as PID 1, journald,
# dbus) with systemd-nspawn, stream the test's output, and exit with the
# test's exit status.
#
# Usage:
#   run-in-systemd.sh [-t SECONDS] [-o OUTDIR] [-e NAME=VAL]... [-v]
#                     PAYLOAD_DIR TEST_SCRIPT [ARGS...]
#   run-in-systemd.sh -b          only build (or check) the cached tree
#
#   -t SECONDS  the test's own time limit (default 300)
#   -o OUTDIR   keep output.log, journal.txt (the container's whole journal,
#               short-monotonic), boot.log (the container console) and rc
#               there; without -o they are kept only in a temp dir that is
#               removed at the end
#   -e NAME=VAL export NAME=VAL to the test (repeatable)
#   -v          also stream the container's console (boot log) to stderr
#
# Inside the container the test runs as root with cwd /harness/payload (a
# copy of PAYLOAD_DIR), stdin /dev/null, and $HARNESS_OUT=/harness/out, which
# is OUTDIR on the host.  PAYLOAD_DIR/rootfs/, if present, is copied onto /
# before boot (so a unit linked from rootfs/etc/systemd/system/
# multi-user.target.wants/ starts at boot).  The container has its own
# network namespace with only "lo" (--private-network).
#
# Exit status: the test's own; 124 if the test timed out; 125 if the
# harness or the container failed (the boot log then goes to stderr).
#
# Environment:
#   SYSTEMD_HARNESS_CACHE     where the tree is cached (/var/tmp/systemd-harness)
#   SYSTEMD_HARNESS_MIRROR    Debian mirror for debootstrap (default: the
#                             host's apt source for the suite)
#   SYSTEMD_HARNESS_SUITE     Debian suite (bookworm)
#   SYSTEMD_HARNESS_PACKAGES  extra packages for the tree, space separated
#
# How it works (see shared/design/systemd-testing.md for the reasons):
#   * The tree is built once with debootstrap --variant=minbase, in a temp dir
#     renamed into place under a flock, keyed by a hash of suite, mirror,
#     package list and HARNESS_VERSION.  It is never written to afterwards.
#   * Each run mounts an overlay (tree below, a pre-filled per-run upper dir
#     on top) inside a private mount namespace, so the mount dies with the
#     container whatever happens to this script.
#   * systemd-nspawn --boot --register=no --keep-unit (there is no host
#     systemd/machined here), in a per-run cgroup in every cgroup hierarchy
#     nspawn uses, so parallel runs do not share nspawn's payload/ cgroup.
#   * harness-runner.service (Type=exec, After=multi-user.target,
#     SuccessAction=/FailureAction=exit-force) waits for
#     `systemctl is-system-running --wait`, runs the test under timeout(1),
#     saves the journal and rc; systemd then exits with the test's status.
#   * Limits: the test's timeout (-t), RuntimeMaxSec= on the runner
#     (T+120 s) and timeout -k 30 around nspawn (T+210 s).
#   * On exit/INT/TERM: SIGTERM to nspawn (clean container shutdown), then
#     SIGKILL to everything left in the run's cgroups (a SIGKILLed nspawn
#     does not take the container's PID 1 with it), then the cgroups, the
#     nspawn propagate dir and the temp dir are removed.

set -u -o pipefail
umask 022

HARNESS_VERSION=1
PROG=${0##*/}
SUITE=${SYSTEMD_HARNESS_SUITE:-bookworm}
CACHE=${SYSTEMD_HARNESS_CACHE:-/var/tmp/systemd-harness}
BASE_PACKAGES="systemd systemd-sysv dbus libsystemd0 procps
  libcurl4 libev4 libcjson1 ca-certificates"

msg() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { msg "error: $*"; exit 125; }
usage() { # $1 = exit status
    sed -n '/^# Usage:/,/^#   -v/s/^# \{0,1\}//p' "$0" >&2
    exit "${1:-125}"
}

# ---------------------------------------------------------------- options

TIMEOUT=300
OUTDIR=
VERBOSE=0
BUILD_ONLY=0
ENVS=()
while getopts ':t:o:e:vbh' opt; do
    case $opt in
    t) TIMEOUT=$OPTARG ;;
    o) OUTDIR=$OPTARG ;;
    e) case $OPTARG in
       [A-Za-z_]*=*) ENVS+=("$OPTARG") ;;
       *) die "-e wants NAME=VALUE, got '$OPTARG'" ;;
       esac ;;
    v) VERBOSE=1 ;;
    b) BUILD_ONLY=1 ;;
    h) usage 0 ;;
    :) die "option -$OPTARG needs an argument" ;;
    *) die "unknown option -$OPTARG (see -h)" ;;
    esac
done
shift $((OPTIND - 1))
case $TIMEOUT in
''|*[!0-9]*|0) die "-t wants a positive number of seconds, got '$TIMEOUT'" ;;
esac
if [ "$BUILD_ONLY" = 0 ] && [ $# -lt 2 ]; then
    usage
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, mounts, cgroups, nspawn)"

# ------------------------------------------------------------ host tools

ensure_host_tools() {
    local missing=()
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v unshare >/dev/null || missing+=(util-linux)
    command -v flock >/dev/null || missing+=(util-linux)
    [ ${#missing[@]} = 0 ] && return 0
    msg "installing on the host: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq "${missing[@]}" >/dev/null ||
            die "apt-get install ${missing[*]} failed"
    fi
}

# ------------------------------------------------------------------ tree

# The host's apt source for $SUITE (an exact suite match, so
# bookworm-security, bookworm-updates and third-party suites are skipped).
detect_mirror() {
    local f
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            awk -v suite="$SUITE" '
                function flush() {
                    if (!found && (" " types " ") ~ / deb / &&
                        index(" " suites " ", " " suite " ") && uris != "") {
                        split(uris, u, " "); print u[1]; found = 1
                    }
                    types = ""; suites = ""; uris = ""
                }
                { gsub(/[ \t]+/, " ") }
                /^ *$/ { flush(); next }
                /^ *#/ { next }
                tolower($1) == "types:"  { $1 = ""; types = $0 }
                tolower($1) == "uris:"   { $1 = ""; uris = $0 }
                tolower($1) == "suites:" { $1 = ""; suites = $0 }
                END { flush() }' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            awk -v suite="$SUITE" '
                $1 == "deb" {
                    i = 2
                    if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) print $i
                }' "$f"
        done
    } | grep -E '^(https?|file)://' | head -n 1
}

MIRROR=${SYSTEMD_HARNESS_MIRROR:-}
if [ -z "$MIRROR" ]; then
    MIRROR=$(detect_mirror)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
MIRROR=${MIRROR%/}
PACKAGES=$(printf '%s\n' $BASE_PACKAGES ${SYSTEMD_HARNESS_PACKAGES:-} | sort -u | paste -sd, -)
KEY=$(printf 'harness-version=%s\nsuite=%s\nmirror=%s\npackages=%s\n' \
    "$HARNESS_VERSION" "$SUITE" "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-16)
TREE_DIR=$CACHE/$SUITE-$KEY
TREE=$TREE_DIR/root

build_tree() {
    [ -d "$TREE/usr/lib/systemd" ] && return 0
    ensure_host_tools
    mkdir -p "$CACHE" || die "cannot create $CACHE"
    exec 8>"$CACHE/.lock"
    if ! flock -w 1800 8; then
        die "timed out waiting for the lock on $CACHE/.lock"
    fi
    if [ -d "$TREE/usr/lib/systemd" ]; then # built meanwhile by another run
        exec 8>&-
        return 0
    fi
    local t0 tmp old
    # Only the lock holder builds: any build dir still here was left by a
    # killed build.
    for old in "$CACHE"/.build-*; do
        [ -d "$old" ] && rm -rf --one-file-system "$old"
    done
    t0=$(date +%s)
    tmp=$(mktemp -d "$CACHE/.build-$SUITE-$KEY.XXXXXX") || die "mktemp failed"
    BUILD_TMP=$tmp
    msg "building the $SUITE tree in $TREE_DIR (mirror $MIRROR; about 40 s)"
    # In a private mount namespace: the /proc and /sys debootstrap mounts in
    # the target go away with it, even if debootstrap is killed.
    # In the background in its own process group, so that INT/TERM stop it
    # at once (see build_cleanup).
    setsid unshare --mount --propagation private \
        debootstrap --variant=minbase --include="$PACKAGES" \
        "$SUITE" "$tmp/root" "$MIRROR" </dev/null >"$tmp/debootstrap.log" 2>&1 &
    BUILD_PID=$!
    wait "$BUILD_PID"
    local st=$?
    BUILD_PID=
    if [ $st != 0 ]; then
        tail -n 30 "$tmp/debootstrap.log" >&2
        die "debootstrap failed with status $st (the end of its log is above)"
    fi
    local r=$tmp/root
    echo harness >"$r/etc/hostname"
    : >"$r/etc/machine-id" # a fresh transient machine ID on every boot
    rm -f "$r/var/lib/dbus/machine-id"
    # Nothing interactive and nothing periodic that could disturb a test.
    local u
    for u in console-getty.service getty@.service systemd-firstboot.service \
        apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer fstrim.timer; do
        ln -sf /dev/null "$r/etc/systemd/system/$u"
    done
    rm -f "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin
    local f
    for f in usr/lib/systemd/systemd bin/kill usr/bin/timeout; do
        [ -x "$r/$f" ] || die "the new tree lacks /$f"
    done
    {
        echo "harness-version=$HARNESS_VERSION"
        echo "suite=$SUITE"
        echo "mirror=$MIRROR"
        echo "packages=$PACKAGES"
        echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "systemd=$(chroot "$r" dpkg-query -W -f '${Version}' systemd 2>/dev/null)"
    } >"$tmp/tree.info"
    rm -f "$tmp/debootstrap.log"
    mv "$tmp" "$TREE_DIR" || die "cannot move the tree into $TREE_DIR"
    BUILD_TMP=
    exec 8>&-
    msg "tree ready in $(( $(date +%s) - t0 )) s: $TREE_DIR"
}

BUILD_TMP=
BUILD_PID=
build_cleanup() {
    if [ -n "$BUILD_PID" ]; then
        kill -TERM -- "-$BUILD_PID" 2>/dev/null
        sleep 1
        kill -KILL -- "-$BUILD_PID" 2>/dev/null
        wait "$BUILD_PID" 2>/dev/null
    fi
    if [ -n "$BUILD_TMP" ] && [ -d "$BUILD_TMP" ]; then
        rm -rf --one-file-system "$BUILD_TMP"
    fi
}
trap build_cleanup EXIT
trap 'msg "interrupted"; exit 130' INT
trap 'msg "interrupted"; exit 143' TERM
build_tree
trap - EXIT INT TERM
if [ "$BUILD_ONLY" = 1 ]; then
    echo "$TREE_DIR"
    exit 0
fi

# ------------------------------------------------------------------- run

PAYLOAD=$1
TEST=$2
shift 2
[ -d "$PAYLOAD" ] || die "payload dir '$PAYLOAD' not found"
[ -f "$TEST" ] || die "test script '$TEST' not found"
ensure_host_tools

RUN_DIR=
MACHINE=harness-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
CGROUPS=()
LAUNCHER=
TAILS=()
CLEANED=0

# Every hierarchy nspawn or the container's systemd may put processes in.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CG_ROOTS=(/sys/fs/cgroup) # pure cgroup2
else
    CG_ROOTS=()
    [ -f /sys/fs/cgroup/systemd/cgroup.procs ] && CG_ROOTS+=(/sys/fs/cgroup/systemd)
    [ -f /sys/fs/cgroup/unified/cgroup.procs ] && CG_ROOTS+=(/sys/fs/cgroup/unified)
    [ ${#CG_ROOTS[@]} -gt 0 ] || die "no name=systemd or cgroup2 hierarchy under /sys/fs/cgroup"
fi

RUNS=$CACHE/runs # one file per live run: "PID STARTTIME RUN_DIR"

cg_pids() { # all PIDs in a run's cgroups, recursively; $1 = machine name
    local root
    for root in "${CG_ROOTS[@]}"; do
        [ -d "$root/$1" ] && find "$root/$1" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

# SIGKILL everything in a run's cgroups (cgroup.kill where it exists), then
# remove the cgroups.  $1 = machine name.
kill_cgroups() {
    local m=$1 root i pids=
    for i in $(seq 50); do
        for root in "${CG_ROOTS[@]}"; do
            [ -f "$root/$m/cgroup.kill" ] && echo 1 >"$root/$m/cgroup.kill" 2>/dev/null
        done
        pids=$(cg_pids "$m")
        [ -z "$pids" ] && break
        kill -KILL $pids 2>/dev/null
        sleep 0.1
    done
    [ -n "$pids" ] && msg "warning: processes left in the cgroups of $m: $pids"
    for root in "${CG_ROOTS[@]}"; do
        for i in $(seq 50); do
            [ -d "$root/$m" ] || break
            find "$root/$m" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$root/$m" ] && sleep 0.1
        done
        [ -d "$root/$m" ] && msg "warning: cannot remove cgroup $root/$m"
    done
}

# Remove what nspawn and the run left on disk.  $1 = machine, $2 = run dir.
remove_run_files() {
    local m=$1 dir=$2
    # nspawn cannot remove this itself when /run is not a tmpfs.
    rm -rf --one-file-system "/run/systemd/nspawn/propagate/$m"
    # The image lock a SIGKILLed nspawn leaves behind (named after the
    # overlay's st_dev:st_ino, unique while our overlay was mounted).
    if [ -n "$dir" ] && [ -s "$dir/lock-inode" ]; then
        rm -f "/run/systemd/nspawn/locks/inode-$(cat "$dir/lock-inode")"
    fi
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        rm -rf --one-file-system "$dir" || msg "warning: cannot remove $dir"
    fi
    rm -f "$RUNS/$m"
}

proc_starttime() { # field 22 of /proc/PID/stat (comm may contain spaces)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    set -- $stat
    echo "${20}"
}

# Clean up after runs whose harness died without cleaning up (SIGKILL,
# a killed CI job): their container is killed by cgroup.
sweep_stale_runs() {
    local f m pid start dir
    [ -d "$RUNS" ] || return 0
    for f in "$RUNS"/harness-*; do
        [ -f "$f" ] || continue
        m=${f##*/}
        read -r pid start dir <"$f" || continue
        [ -n "$pid" ] && [ "$(proc_starttime "$pid")" = "$start" ] && continue
        msg "cleaning up after a dead run: $m"
        kill_cgroups "$m"
        remove_run_files "$m" "$dir"
    done
}

cleanup() {
    [ "$CLEANED" = 1 ] && return
    CLEANED=1
    set +e
    local i
    if [ -n "$LAUNCHER" ] && kill -0 "$LAUNCHER" 2>/dev/null; then
        # timeout(1) passes SIGTERM on to nspawn, which asks the container's
        # systemd to shut down cleanly.
        kill -TERM "$LAUNCHER" 2>/dev/null
        for i in $(seq 50); do
            kill -0 "$LAUNCHER" 2>/dev/null || break
            sleep 0.2
        done
    fi
    # Whatever is left (a SIGKILLed nspawn leaves the container's PID 1
    # running) is killed by cgroup.
    [ ${#CGROUPS[@]} -gt 0 ] && kill_cgroups "$MACHINE"
    if [ -n "$LAUNCHER" ]; then
        kill -KILL "$LAUNCHER" 2>/dev/null
        wait "$LAUNCHER" 2>/dev/null
    fi
    for i in "${TAILS[@]}"; do
        kill "$i" 2>/dev/null
        wait "$i" 2>/dev/null
    done
    remove_run_files "$MACHINE" "$RUN_DIR"
}
on_signal() {
    msg "interrupted by SIG$1, stopping the container"
    cleanup
    trap - EXIT
    [ "$1" = INT ] && exit 130
    exit 143
}
trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

sweep_stale_runs
mkdir -p "$RUNS" || die "cannot create $RUNS"
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/systemd-harness-run.XXXXXX") || die "mktemp failed"
echo "$$ $(proc_starttime $$) $RUN_DIR" >"$RUN_DIR/registry" &&
    mv "$RUN_DIR/registry" "$RUNS/$MACHINE" || die "cannot register the run in $RUNS"
if [ -z "$OUTDIR" ]; then
    OUTDIR=$RUN_DIR/out
fi
mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
rm -f "$OUTDIR/output.log" "$OUTDIR/journal.txt" "$OUTDIR/boot.log" \
    "$OUTDIR/rc" "$OUTDIR/rc.tmp"
: >"$OUTDIR/output.log"
: >"$OUTDIR/boot.log"

# --- the per-run upper layer
UPPER=$RUN_DIR/upper
mkdir -p "$UPPER" "$RUN_DIR/work" "$RUN_DIR/root"
if [ -d "$PAYLOAD/rootfs" ]; then
    cp -a "$PAYLOAD/rootfs/." "$UPPER/" || die "cannot copy $PAYLOAD/rootfs"
fi
mkdir -p "$UPPER/harness/payload" "$UPPER/harness/out" "$UPPER/etc/systemd/system"
cp -a "$PAYLOAD/." "$UPPER/harness/payload/" || die "cannot copy $PAYLOAD"
cp "$TEST" "$UPPER/harness/test" && chmod 0755 "$UPPER/harness/test" ||
    die "cannot copy $TEST"

{
    printf 'HARNESS_TIMEOUT=%s\n' "$TIMEOUT"
    for e in "${ENVS[@]}"; do
        printf 'export %q\n' "$e"
    done
    printf 'set --'
    [ $# -gt 0 ] && printf ' %q' "$@"
    printf '\n'
} >"$UPPER/harness/env"

cat >"$UPPER/harness/runner" <<'EOF'
#!/bin/bash
# Runs inside the container as harness-runner.service.
out=/harness/out
. /harness/env
export HARNESS_OUT=$out
state=$(timeout 120 systemctl is-system-running --wait 2>&1)
echo "harness: system state after boot: ${state:-?}"
if [ "$state" != running ]; then
    systemctl --failed --no-legend --no-pager
fi
cd /harness/payload || { echo 125 >"$out/rc"; exit 125; }
start=$(date +%s)
timeout -k 10 "$HARNESS_TIMEOUT" /harness/test "$@" </dev/null >>"$out/output.log" 2>&1
rc=$?
if [ $rc = 124 ] || { [ $rc = 137 ] && [ $(( $(date +%s) - start )) -ge "$HARNESS_TIMEOUT" ]; }; then
    rc=124
    echo "harness: the test timed out after ${HARNESS_TIMEOUT}s" >>"$out/output.log"
fi
echo "harness: test exit status $rc"
echo "$rc" >"$out/rc.tmp"
journalctl -b --no-pager -o short-monotonic >"$out/journal.txt" 2>&1
mv "$out/rc.tmp" "$out/rc"
sync
exit $rc
EOF
chmod 0755 "$UPPER/harness/runner"

cat >"$UPPER/etc/systemd/system/harness-runner.service" <<EOF
[Unit]
Description=Test harness runner
After=multi-user.target
SuccessAction=exit-force
FailureAction=exit-force

[Service]
Type=exec
ExecStart=/harness/runner
StandardInput=null
StandardOutput=journal+console
StandardError=journal+console
RuntimeMaxSec=$((TIMEOUT + 120))
EOF

# --- per-run cgroups
for root in "${CG_ROOTS[@]}"; do
    mkdir "$root/$MACHINE" || die "cannot create cgroup $root/$MACHINE"
    CGROUPS+=("$root/$MACHINE")
done

# --- boot
NSPAWN=(systemd-nspawn --boot --register=no --keep-unit --private-network
    --console=read-only --link-journal=no --resolv-conf=off --timezone=off
    --machine="$MACHINE" --directory="$RUN_DIR/root"
    --bind="$OUTDIR:/harness/out"
    systemd.wants=harness-runner.service)

(
    for cg in "${CGROUPS[@]}"; do
        echo "$BASHPID" >"$cg/cgroup.procs" || exit 125
    done
    exec timeout -k 30 $((TIMEOUT + 210)) \
        unshare --mount --propagation private -- /bin/sh -c '
            mount -t overlay overlay \
                -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4" || exit 125
            stat -c "%d:%i" "$4" >"$5"
            shift 5
            exec "$@"' sh "$TREE" "$UPPER" "$RUN_DIR/work" "$RUN_DIR/root" \
        "$RUN_DIR/lock-inode" "${NSPAWN[@]}"
) </dev/null >"$OUTDIR/boot.log" 2>&1 &
LAUNCHER=$!

tail -n +1 -F --pid="$LAUNCHER" "$OUTDIR/output.log" 2>/dev/null &
TAILS+=($!)
if [ "$VERBOSE" = 1 ]; then
    tail -n +1 -F --pid="$LAUNCHER" "$OUTDIR/boot.log" >&2 2>/dev/null &
    TAILS+=($!)
fi

T0=$SECONDS
wait "$LAUNCHER" 2>/dev/null # no "Killed" job notice: reported below
status=$?
LAUNCHER=
for t in "${TAILS[@]}"; do
    wait "$t"
done
TAILS=()

rc=
[ -f "$OUTDIR/rc" ] && rc=$(cat "$OUTDIR/rc")
case $rc in
'' | *[!0-9]*)
    if [ $((SECONDS - T0)) -ge $((TIMEOUT + 210)) ]; then
        msg "error: the container did not finish within $((TIMEOUT + 210)) s"
    else
        msg "error: the container ended (status $status) before the test finished"
    fi
    msg "----- boot log -----"
    cat "$OUTDIR/boot.log" >&2
    msg "----- end of boot log -----"
    rc=125
    ;;
*)
    [ "$rc" = 124 ] && msg "the test timed out after $TIMEOUT s"
    if [ "$status" != "$rc" ]; then
        msg "warning: nspawn exited with $status, the test with $rc"
    fi
    ;;
esac
exit "$rc"
