#!/usr/bin/env bash
# Container start: the time from launch to exit of `/bin/true` in a busybox container, tepui's
# runtime beside runc and crun on the same OCI bundle, in one run, timed with hyperfine.
#
# A benchmark, not a test. It
#   1. installs runc, crun, hyperfine, busybox-static and jq (Debian) if they are missing;
#   2. builds tepui-bench-run (crates/runtime/src/bin/tepui-bench-run.rs) in release, in
#      CARGO_TARGET_DIR (default target/bench);
#   3. makes one busybox rootfs (from busybox-static) and two bundles on it: `netns` (own pid,
#      mount, uts, ipc and network namespaces: runc's default) and `hostnet` (no network
#      namespace: tepui's default, `--network host`). Both have the mounts, capabilities, masked
#      paths and binds (a sandbox dir at /mnt/sandbox, /etc/hosts) that tepui's runtime generates
#      for the same task, and an absolute cgroupsPath;
#   4. tries crun on the bundle, and leaves it out (printing its error) when it cannot run here;
#   5. per bundle and round, runs hyperfine over (each round starting with the next one):
#        tepui          tepui-bench-run BUNDLE           Runtime::launch (sandbox + shim) + wait
#        tepui-tmpfs    the same, sandboxes on /dev/shm  (no fsync cost for the sandbox records)
#        libcontainer   tepui-bench-run --direct BUNDLE  create + start + waitpid + delete, in-process
#        runc           runc run -b BUNDLE b$$
#        crun           crun run -b BUNDLE c$$           (when it runs here)
#      Every command goes through hyperfine's shell (`sh -c`, whose start-up hyperfine measures and
#      subtracts), because runc and crun need a new container id per run ($$, the shell's pid);
#   6. prints median, p99 (nearest rank over all rounds' runs), mean and the ratios to runc.
# Everything it made is removed at exit. Needs root (namespaces and cgroups).
#
# Settings (environment):
#   RUNS=60 WARMUP=10 ROUNDS=10    runs per command per round (the rounds rotate the order of the
#                                  commands); all rounds are pooled for the table
#   BUNDLES="netns hostnet"        which bundles to time
#   CARGO_TARGET_DIR=target/bench
#   BENCH_RUN_BIN=PATH             use this tepui-bench-run instead of building one
#   BENCH_TMP=/var/tmp             where bundles and tepui's sandboxes go (a real disk, as an agent's data dir)
#   RESULTS=DIR                    keep hyperfine's JSON exports and the summary there
#
#   e2e/bench/runtime-start.sh
set -euo pipefail

RUNS=${RUNS:-60}
WARMUP=${WARMUP:-10}
ROUNDS=${ROUNDS:-10}
BUNDLES=${BUNDLES:-netns hostnet}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
RESULTS=${RESULTS:-}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}

log() { printf '[runtime-start %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# The commit the sources are at, or that they are not a git checkout (an export).
tree_version() {
    if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        echo "$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD || echo ' (with local changes)')"
    else
        echo "$ROOT (not a git checkout)"
    fi
}

[[ $(id -u) -eq 0 ]] || die "run as root: containers need namespaces and cgroups"

WORK=""
SHM=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Containers left by an interrupted run (ids are ours: b*, c*, bench-*).
    if [[ -n $WORK && -d $WORK ]]; then
        for id in $(runc --root "$WORK/runc-state" list -q 2>/dev/null); do
            runc --root "$WORK/runc-state" delete -f "$id" >/dev/null 2>&1 || true
        done
        for id in $(crun --root "$WORK/crun-state" list -q 2>/dev/null); do
            crun --root "$WORK/crun-state" delete -f "$id" >/dev/null 2>&1 || true
        done
        rm -rf "$WORK"
    fi
    [[ -n $SHM && -d $SHM ]] && rm -rf "$SHM"
    # The bundles' cgroup (runc, crun and libcontainer remove it after each run; an
    # interrupted run may leave it).
    for d in /sys/fs/cgroup/*/tepui-bench/bundle /sys/fs/cgroup/*/tepui-bench /sys/fs/cgroup/tepui-bench; do
        [[ -d $d ]] && rmdir "$d" 2>/dev/null || true
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- 1. tools -------------------------------------------------------------------------------
need_pkgs=()
command -v runc >/dev/null || need_pkgs+=(runc)
command -v crun >/dev/null || need_pkgs+=(crun)
command -v hyperfine >/dev/null || need_pkgs+=(hyperfine)
command -v jq >/dev/null || need_pkgs+=(jq)
[[ -x /bin/busybox ]] || need_pkgs+=(busybox-static)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- 2. build ---------------------------------------------------------------------------------
if [[ -n ${BENCH_RUN_BIN:-} ]]; then
    BIN=$BENCH_RUN_BIN
    log "using $BIN (BENCH_RUN_BIN), not building"
else
    log "building tepui-bench-run (release) in $CARGO_TARGET_DIR"
    cargo build --manifest-path "$ROOT/Cargo.toml" --release --quiet -p tepui-runtime --bin tepui-bench-run
    BIN=$CARGO_TARGET_DIR/release/tepui-bench-run
fi
[[ -x $BIN ]] || die "the build did not produce $BIN"

# --- 3. rootfs and bundles ----------------------------------------------------------------
WORK=$(mktemp -d "$BENCH_TMP/tepui-runtime-start.XXXXXX")
SHM=$(mktemp -d /dev/shm/tepui-runtime-start.XXXXXX)
log "work dir $WORK ($(df -T "$WORK" | awk 'NR==2 {print $2}') on $(df "$WORK" | awk 'NR==2 {print $1}'))"
RFS=$WORK/rootfs
mkdir -p "$RFS"/{bin,etc,proc,sys,dev,tmp,root}
chmod 1777 "$RFS/tmp"
cp /bin/busybox "$RFS/bin/busybox"
for l in sh true sleep cat ls; do ln -s busybox "$RFS/bin/$l"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$RFS/etc/passwd"
echo 'root:x:0:' >"$RFS/etc/group"
: >"$RFS/etc/hosts"

# What tepui's runtime (crates/runtime/src/oci.rs) generates for this task, as a plain bundle.
make_bundle() { # NAME NETNS(true|false)
    local b=$WORK/$1
    mkdir -p "$b/sandbox"
    printf '127.0.0.1\tlocalhost bench\n::1\tlocalhost\n' >"$b/hosts"
    jq -n --arg rootfs "$RFS" --arg sandbox "$b/sandbox" --arg hosts "$b/hosts" --argjson netns "$2" '
      def bind($s; $d; $ro): {destination: $d, type: "bind", source: $s,
        options: (["rbind", "rprivate", "nosuid", "nodev"] + (if $ro then ["ro"] else [] end))};
      ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
       "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
       "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"] as $caps |
      {
        ociVersion: "1.0.2",
        process: {
          terminal: false,
          user: {uid: 0, gid: 0},
          args: ["/bin/true"],
          env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
          cwd: "/",
          capabilities: {bounding: $caps, effective: $caps, permitted: $caps},
          noNewPrivileges: true
        },
        root: {path: $rootfs, readonly: false},
        hostname: "bench",
        mounts: [
          {destination: "/proc", type: "proc", source: "proc"},
          {destination: "/dev", type: "tmpfs", source: "tmpfs",
           options: ["nosuid", "strictatime", "mode=755", "size=65536k"]},
          {destination: "/dev/pts", type: "devpts", source: "devpts",
           options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
          {destination: "/dev/shm", type: "tmpfs", source: "shm",
           options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
          {destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]},
          {destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]},
          bind($sandbox; "/mnt/sandbox"; false),
          bind($hosts; "/etc/hosts"; true)
        ],
        linux: {
          cgroupsPath: "/tepui-bench/bundle",
          namespaces: ([{type: "pid"}, {type: "mount"}, {type: "uts"}, {type: "ipc"}]
                       + (if $netns then [{type: "network"}] else [] end)),
          resources: {devices: [{allow: false, access: "rwm"}]},
          maskedPaths: ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
          readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
      }' >"$b/config.json"
}
make_bundle netns true
make_bundle hostnet false
if [[ -n $RESULTS ]]; then
    mkdir -p "$RESULTS"
    for b in netns hostnet; do cp "$WORK/$b/config.json" "$RESULTS/config-$b.json"; done
fi

TROOT=$WORK/tepui-root       # tepui's sandboxes: on the real disk, as under an agent's data dir
TROOT_SHM=$SHM/tepui-root    # the same on tmpfs
LCROOT=$WORK/lc-direct
RUNC=(runc --root "$WORK/runc-state")
CRUN=(crun --root "$WORK/crun-state")

# --- 4. does each runtime run the bundle? -----------------------------------------------------
for b in $BUNDLES; do
    "$BIN" --root "$TROOT" "$WORK/$b" || die "tepui-bench-run failed on the $b bundle"
    "$BIN" --direct --root "$LCROOT" "$WORK/$b" || die "tepui-bench-run --direct failed on the $b bundle"
    "${RUNC[@]}" run -b "$WORK/$b" "try-$b-$$" || die "runc failed on the $b bundle"
done
CRUN_OK=0
CRUN_ERR=$("${CRUN[@]}" run -b "$WORK/netns" "try-crun-$$" 2>&1) && CRUN_OK=1
if ((CRUN_OK)); then
    log "crun runs here; it is timed too"
else
    "${CRUN[@]}" delete -f "try-crun-$$" >/dev/null 2>&1 || true
    log "crun $(crun --version | head -1 | awk '{print $3}') cannot run here: $CRUN_ERR"
fi

# --- 5. measure -----------------------------------------------------------------------------
machine() {
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "mem: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); kernel $(uname -r)"
    echo "runc: $(runc --version | head -1 | awk '{print $3}'); crun: $(crun --version | head -1 | awk '{print $3}'); $(hyperfine --version)"
    echo "tepui: $(tree_version)"
}
machine | while read -r l; do log "$l"; done

# What one sandbox record costs on the sandboxes' disk right now: tepui writes each record to a
# new file, fdatasyncs it and renames it over the old one. 50 such writes with fdatasync minus
# 50 without, per write, in ms.
record_sync_ms() {
    local t0 t1 t2 i
    t0=$(date +%s%N)
    for i in $(seq 50); do
        dd if=/dev/zero of="$WORK/probe.tmp" bs=600 count=1 conv=fdatasync status=none
        mv -f "$WORK/probe.tmp" "$WORK/probe.json"
    done
    t1=$(date +%s%N)
    for i in $(seq 50); do
        dd if=/dev/zero of="$WORK/probe.tmp" bs=600 count=1 status=none
        mv -f "$WORK/probe.tmp" "$WORK/probe.json"
    done
    t2=$(date +%s%N)
    rm -f "$WORK/probe.tmp" "$WORK/probe.json"
    awk -v a=$((t1 - t0)) -v b=$((t2 - t1)) 'BEGIN {printf "%.2f", (a - b) / 50 / 1e6}'
}
JSONS=$WORK/json
mkdir -p "$JSONS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
SYNC_START=$(record_sync_ms)
for b in $BUNDLES; do
    B=$WORK/$b
    for r in $(seq "$ROUNDS"); do
        log "bundle $b, round $r/$ROUNDS: $RUNS runs each (load average $(cut -d' ' -f1-3 /proc/loadavg))"
        names=(tepui tepui-tmpfs libcontainer runc)
        lines=(
            "$BIN --root $TROOT $B"
            "$BIN --root $TROOT_SHM $B"
            "$BIN --direct --root $LCROOT $B"
            "${RUNC[*]} run -b $B b\$\$"
        )
        ((CRUN_OK)) && { names+=(crun); lines+=("${CRUN[*]} run -b $B c\$\$"); }
        # hyperfine runs one command after the other: start each round with the next command,
        # so that no command always gets the same slice of a noisy machine.
        cmds=()
        n=${#names[@]}
        for i in $(seq 0 $((n - 1))); do
            k=$(((i + r - 1) % n))
            cmds+=(-n "${names[$k]}" "${lines[$k]}")
        done
        hyperfine --style basic --runs "$RUNS" --warmup "$WARMUP" \
            --export-json "$JSONS/$b-$r.json" "${cmds[@]}" >&2
    done
done

# --- 6. summary -------------------------------------------------------------------------------
# Pools every round's times per (bundle, command); nearest-rank percentiles, in ms.
summary() {
    for b in $BUNDLES; do
        jq -s --arg bundle "$b" '
          def pct($p): (sort) as $t | ($t | length) as $n
            | $t[([((($p * $n) | ceil) - 1), 0] | max)];
          [.[].results[]] | group_by(.command) | map({
            bundle: $bundle,
            command: .[0].command,
            runs: ([.[].times[]] | length),
            median_ms: ([.[].times[]] | pct(0.5) * 1000),
            p99_ms: ([.[].times[]] | pct(0.99) * 1000),
            mean_ms: ([.[].times[]] | add / length * 1000),
            min_ms: ([.[].times[]] | min * 1000),
            round_medians_ms: [.[].median * 1000]
          })' "$JSONS/$b"-*.json
    done | jq -s 'add'
}
SUMMARY=$(summary)
[[ -n $RESULTS ]] && { cp "$JSONS"/*.json "$RESULTS/"; echo "$SUMMARY" >"$RESULTS/summary.json"; }

echo
machine
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "fdatasync of a new 600-byte file in $BENCH_TMP (one sandbox record): $SYNC_START ms at the start, $(record_sync_ms) ms at the end"
echo
for b in $BUNDLES; do
    echo "bundle $b ($RUNS runs x $ROUNDS rounds per command; ms):"
    echo "$SUMMARY" | jq -r --arg b "$b" '
      map(select(.bundle == $b)) as $rows
      | ($rows[] | select(.command == "runc")) as $runc
      | ["command", "median", "p99", "mean", "min", "median/runc", "p99/runc", "round medians (min-max)"],
        ($rows | sort_by(.median_ms)[] | [
          .command,
          (.median_ms * 100 | round / 100), (.p99_ms * 100 | round / 100),
          (.mean_ms * 100 | round / 100), (.min_ms * 100 | round / 100),
          (.median_ms / $runc.median_ms * 100 | round / 100),
          (.p99_ms / $runc.p99_ms * 100 | round / 100),
          (.round_medians_ms | "\(min * 10 | round / 10)-\(max * 10 | round / 10)")
        ]) | @tsv' | column -t -s $'\t'
    echo
done
((CRUN_OK)) || echo "crun: not timed; on this host it fails with: $CRUN_ERR"
