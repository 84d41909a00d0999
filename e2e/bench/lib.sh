# Shared by the benchmark scripts: logging, a watchdog, processes killed and the work dir
# removed at exit, packages installed when missing, and waits with a deadline.
#
# A script sets NAME (for log lines) and BENCH_TIMEOUT, sources this file, and then calls
# bench_start. Everything it starts in the background goes through `spawn` (long-lived) or
# `in_bg` (waited for), so that cleanup can stop it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_TMP=${BENCH_TMP:-/var/tmp}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}

log() { printf '[%s %s] %s\n' "$NAME" "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
WORK=""
WATCHDOG=""

# Stops every process started so far, by pid, and forgets them: TERM, then KILL after 5 s. A
# stopped process (a benchmark may freeze one) handles SIGTERM only once continued.
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    [[ -n $WATCHDOG ]] && { kill "$WATCHDOG" 2>/dev/null || true; wait "$WATCHDOG" 2>/dev/null || true; }
    # Tasks outlive their agent by design (each has a shim): whatever still runs from the
    # work dir is asked to stop (a shim kills its task and removes its cgroups), then killed.
    if [[ -n $WORK ]]; then
        pkill -TERM -f -- "$WORK/" 2>/dev/null || true
        for _ in $(seq 100); do pgrep -f -- "$WORK/" >/dev/null || break; sleep 0.2; done
        pkill -KILL -f -- "$WORK/" 2>/dev/null || true
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $rc -ne 0 ]]; then
            for f in "$WORK"/*.log; do
                [[ -f $f ]] || continue
                log "last lines of $(basename "$f"):"
                tail -n 15 "$f" >&2 || true
            done
        fi
        rm -rf "$WORK"
    fi
    exit "$rc"
}

# Installs the traps, the watchdog (the whole run ends after BENCH_TIMEOUT seconds) and the
# work dir under BENCH_TMP.
bench_start() {
    trap bench_cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    (
        trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
        sleep "$BENCH_TIMEOUT" >/dev/null 2>&1 &
        sleeper=$!
        wait "$sleeper" || exit 0
        log "took longer than BENCH_TIMEOUT=${BENCH_TIMEOUT}s; stopping"
        kill -TERM $$
    ) &
    WATCHDOG=$!
    WORK=$(mktemp -d "$BENCH_TMP/tepui-$NAME.XXXXXX")
    # The clusters a benchmark starts begin with this management API token; the CLI sends it,
    # and so does every curl (through its config file, which sub-shells read too).
    export TEPUI_BOOTSTRAP_API_TOKEN="bench-accessor.bench-secret-not-for-production"
    export TEPUI_API_TOKEN=$TEPUI_BOOTSTRAP_API_TOKEN
    export CURL_HOME=$WORK
    printf 'header = "Authorization: Bearer %s"\n' "$TEPUI_API_TOKEN" >"$WORK/.curlrc"
}

# need_cmd COMMAND PACKAGE...: installs the Debian packages when COMMAND is missing.
need_cmd() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null && return 0
    log "installing $*"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Runs a command in the background and waits for it, so that a signal is handled at once;
# cleanup kills it if it is still running.
in_bg() {
    "$@" &
    local pid=$!
    PIDS+=("$pid")
    local rc=0
    wait "$pid" || rc=$?
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    return "$rc"
}

# spawn LOG COMMAND...: starts a long-lived process with its output in $WORK/LOG.
spawn() {
    local out=$1
    shift
    "$@" >"$WORK/$out" 2>&1 &
    PIDS+=("$!")
}

# remove_bridge NAME: deletes a bridge an agent made and the rules it added for it in tepui's
# chains (the runtime leaves both when the agent stops, for the tasks that outlive it).
remove_bridge() {
    local br=$1 tc table chain rule
    ip link del "$br" 2>/dev/null || true
    for tc in nat:TEPUI-POSTROUTING nat:TEPUI-DNS filter:TEPUI-FORWARD filter:TEPUI-INPUT; do
        table=${tc%%:*}
        chain=${tc#*:}
        iptables -w 10 -t "$table" -S "$chain" 2>/dev/null |
            grep -E -- "(-i|-o) $br( |\$)|tepui-dns:$br\"" | sed 's/^-A/-D/' |
            while read -r rule; do eval iptables -w 10 -t "$table" "$rule" || true; done
    done
}
port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_until SECONDS WHAT COMMAND...: runs COMMAND until it succeeds, or dies after SECONDS.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what: not within ${secs}s"
        sleep 0.05
    done
}

build_tepui() {
    # TEPUI_BIN: a tepui binary built already (to compare two builds with the same script).
    if [[ -n ${TEPUI_BIN:-} ]]; then
        TEPUI=$TEPUI_BIN
        [[ -x $TEPUI ]] || die "TEPUI_BIN=$TEPUI is not an executable"
        log "using $TEPUI"
        return
    fi
    log "building tepui (release) in $CARGO_TARGET_DIR"
    in_bg cargo build --manifest-path "$ROOT/Cargo.toml" --release --quiet -p tepui --bin tepui
    TEPUI=$CARGO_TARGET_DIR/release/tepui
    [[ -x $TEPUI ]] || die "the build did not produce $TEPUI"
}

# busybox_rootfs DIR: a minimal root filesystem with busybox-static and its applets.
busybox_rootfs() {
    local dir=$1
    need_cmd busybox busybox-static
    mkdir -p "$dir/bin"
    cp "$(command -v busybox)" "$dir/bin/busybox"
    local applet
    for applet in sh true sleep echo cat ls; do ln -sf busybox "$dir/bin/$applet"; done
}

# busybox_image TAR NAME: a `docker save` archive of that root filesystem, tagged NAME.
busybox_image() {
    local tar=$1 name=$2 dir
    dir=$(mktemp -d "$WORK/image.XXXXXX")
    busybox_rootfs "$dir/rootfs"
    tar -C "$dir/rootfs" -cf "$dir/layer.tar" .
    local layer config
    layer=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
    mkdir -p "$dir/out/$layer"
    mv "$dir/layer.tar" "$dir/out/$layer/layer.tar"
    printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$layer" >"$dir/out/config.json"
    config=$(sha256sum "$dir/out/config.json" | cut -d' ' -f1)
    mv "$dir/out/config.json" "$dir/out/$config.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$config" "$name" "$layer" \
        >"$dir/out/manifest.json"
    tar -C "$dir/out" -cf "$tar" manifest.json "$config.json" "$layer/layer.tar"
}
