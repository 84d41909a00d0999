#!/usr/bin/env bash
# Agent memory: the resident memory (VmRSS) of an idle tepui agent process with 0 and with 50
# running containers (`/bin/sleep 1000` in a busybox image), and what each container's shim
# costs.
#
# A benchmark, not a test. It
#   1. installs busybox-static and jq (Debian) if they are missing;
#   2. builds the tepui binary in release, in CARGO_TARGET_DIR (default target/bench);
#   3. writes a one-layer busybox image as a `docker save` archive (busybox-static, bin/sh and
#      bin/sleep links, /etc/passwd), imported later with `tepui image import`;
#   4. `dev`: starts `tepui dev` (server and agent in ONE process) on 127.0.30.1 with its own
#      data dir, waits until its agent is ready, lets it idle SETTLE seconds and reads the
#      process's VmRSS (0 containers); imports the image, runs TASKS tasks
#        tepui task run IMAGE --mem 8 --cpus 0.01 --kill-grace 1 -- /bin/sleep 1000
#      (reading VmRSS again after the import, the base for the per-container figure), waits
#      until all are TASK_RUNNING (`tepui task ls -o json`), idles SETTLE seconds, and
#      reads VmRSS again, plus every shim's VmRSS, PSS and RssAnon (shims share the tepui
#      binary's pages, so the sum of their RSS counts those pages once per shim; PSS splits them;
#      RssAnon is each shim's own heap and stacks) and the containers' own processes; kills the
#      tasks and stops the process. One shim's RSS by mapping (binary, libraries, heap, stack,
#      other anonymous) goes into the JSON;
#   5. `agent`: the same for a separate `tepui agent` on 127.0.30.3 that joins a
#      `tepui server --bootstrap` on 127.0.30.2 with the agent token from the server's data dir.
#      This is the agent on its own, as it runs on a worker node.
#   6. prints a table.
# Everything it starts is stopped at exit (tasks killed through the API, then the daemons by
# pid, then any shim left by the pid it recorded), and its temp dir removed. Only loopback.
# Needs root (containers).
#
# Settings (environment):
#   TASKS=50 SETTLE=15       containers to run; seconds of idling before each reading
#   MODES="dev agent"        which setups to measure
#   CARGO_TARGET_DIR=target/bench
#   TEPUI_BIN=PATH           use this tepui binary instead of building one
#   BENCH_TMP=/var/tmp       where the data dirs go
#   BENCH_TIMEOUT=1800       seconds for the whole run, build included
#   RESULTS=FILE             also write the JSON results there
#
#   e2e/bench/agent-rss.sh
set -euo pipefail

TASKS=${TASKS:-50}
SETTLE=${SETTLE:-15}
MODES=${MODES:-dev agent}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
RESULTS=${RESULTS:-}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
DEV_IP=127.0.30.1
SRV_IP=127.0.30.2
AGENT_IP=127.0.30.3

log() { printf '[agent-rss %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# The commit the sources are at, or that they are not a git checkout (an export).
tree_version() {
    if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        echo "$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD || echo ' (with local changes)')"
    else
        echo "$ROOT (not a git checkout)"
    fi
}

[[ $(id -u) -eq 0 ]] || die "run as root: the agent runs containers"

# --- cleanup: tasks, daemons and shims this script started, by pid; the temp dir -------------
PIDS=()     # daemons
API=""      # the server's HTTP address while one runs
WORK=""
WATCHDOG=""
stop_pid() { # PID: SIGTERM, up to 10 s, then SIGKILL
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
# Shims recorded in a data dir that are still alive, checked to be ours by their command line.
live_shims() { # DATA_DIR
    local f pid
    for f in $(find "$1" -name shim.pid 2>/dev/null); do
        pid=$(cat "$f" 2>/dev/null) || continue
        [[ -n $pid ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null |
            grep -q -- "shim --sandbox $(dirname "$f")" && echo "$pid"
    done
    return 0
}
kill_tasks() { # through the API: every task that has not ended
    [[ -n $API ]] || return 0
    local ids
    ids=$("$TEPUI" task ls --addr "$API" -o json 2>/dev/null |
        jq -r '.[] | select(.state | IN("TASK_RUNNING", "TASK_STARTING", "TASK_STAGING")) | .id') || return 0
    for id in $ids; do "$TEPUI" task kill "$id" --addr "$API" >/dev/null 2>&1 || true; done
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    kill_tasks
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $WORK && -d $WORK ]]; then
        # A shim that outlived its agent (they are detached on purpose): SIGTERM kills its task.
        for pid in $(live_shims "$WORK"); do stop_pid "$pid"; done
        if [[ $rc -ne 0 ]]; then
            for f in "$WORK"/*.log; do
                [[ -f $f ]] || continue
                log "last lines of $(basename "$f"):"
                tail -n 15 "$f" >&2 || true
            done
        fi
        rm -rf "$WORK"
    fi
    [[ -n $WATCHDOG ]] && { kill "$WATCHDOG" 2>/dev/null || true; wait "$WATCHDOG" 2>/dev/null || true; }
    exit "$rc"
}
trap cleanup EXIT
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

# --- 1. tools -------------------------------------------------------------------------------
need_pkgs=()
command -v jq >/dev/null || need_pkgs+=(jq)
[[ -x /bin/busybox ]] || need_pkgs+=(busybox-static)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- 2. build ---------------------------------------------------------------------------------
if [[ -n ${TEPUI_BIN:-} ]]; then
    TEPUI=$TEPUI_BIN
    log "using $TEPUI (TEPUI_BIN), not building"
else
    log "building tepui (release) in $CARGO_TARGET_DIR"
    cargo build --manifest-path "$ROOT/Cargo.toml" --release --quiet -p tepui --bin tepui &
    build=$!
    wait "$build" || die "the build failed"
    TEPUI=$CARGO_TARGET_DIR/release/tepui
fi
[[ -x $TEPUI ]] || die "the build did not produce $TEPUI"

WORK=$(mktemp -d "$BENCH_TMP/tepui-agent-rss.XXXXXX")
log "work dir $WORK"

port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
for ip in $DEV_IP $SRV_IP $AGENT_IP; do for p in 5050 5051 5052; do
    ! port_busy "$ip" "$p" || die "$ip:$p is already in use"
done; done

# --- 3. the image -------------------------------------------------------------------------
IMAGE_TAG=tepui-bench/busybox:latest
make_archive() { # OUT
    local d=$WORK/image l
    mkdir -p "$d/layer/bin" "$d/layer/etc" "$d/layer/tmp" "$d/out"
    chmod 1777 "$d/layer/tmp"
    cp /bin/busybox "$d/layer/bin/busybox"
    for l in sh sleep true cat; do ln -s busybox "$d/layer/bin/$l"; done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$d/layer/etc/passwd"
    tar --numeric-owner --owner=0 --group=0 --mtime=@1700000000 --sort=name \
        -C "$d/layer" -cf "$d/layer.tar" bin etc tmp
    local diff
    diff=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
    mkdir -p "$d/out/$diff"
    mv "$d/layer.tar" "$d/out/$diff/layer.tar"
    jq -n --arg diff "sha256:$diff" --arg arch "$(dpkg --print-architecture)" '{
        created: "2024-01-01T00:00:00Z", architecture: $arch, os: "linux",
        config: {Env: ["PATH=/bin"], Cmd: ["/bin/sh"]},
        rootfs: {type: "layers", diff_ids: [$diff]}}' >"$d/config.json"
    local cfg
    cfg=$(sha256sum "$d/config.json" | cut -d' ' -f1)
    mv "$d/config.json" "$d/out/$cfg.json"
    jq -n --arg cfg "$cfg.json" --arg layer "$diff/layer.tar" --arg tag "$IMAGE_TAG" \
        '[{Config: $cfg, RepoTags: [$tag], Layers: [$layer]}]' >"$d/out/manifest.json"
    tar --numeric-owner --owner=0 --group=0 -C "$d/out" -cf "$1" manifest.json "$cfg.json" "$diff/layer.tar"
}
ARCHIVE=$WORK/busybox.tar
make_archive "$ARCHIVE"

# --- measuring helpers ----------------------------------------------------------------------
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }        # PID FIELD
pss_kb() { awk '$1 == "Pss:" {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; } # PID
children() { ps -o pid= --ppid "$1" | tr -d ' '; }
# One process's resident memory by kind of mapping, in kB, as JSON.
shim_breakdown() { # PID
    awk -v exe="$(readlink "/proc/$1/exe")" '
        /^[0-9a-f]+-[0-9a-f]+ / {
            n = $6
            if (n == exe) k = "binary"; else if (n ~ /\.so/) k = "libraries"
            else if (n == "[heap]") k = "heap"; else if (n == "[stack]") k = "stack"
            else if (n == "") k = "other_anon"; else k = "other"
        }
        /^Rss:/ { r[k] += $2 }
        END { printf "{"; sep = ""; for (k in r) { printf "%s\"%s\": %d", sep, k, r[k]; sep = ", " }; print "}" }
    ' "/proc/$1/smaps" 2>/dev/null || echo '{}'
}

wait_ready() { # ADDR AGENT_NAME
    for _ in $(seq 300); do
        if "$TEPUI" node ls --addr "$1" -o json 2>/dev/null |
            jq -e --arg n "$2" 'map(select(.name == $n and (.roles | test("agent")) and .status == "ready")) | length == 1' \
                >/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    "$TEPUI" node ls --addr "$1" >&2 || true
    die "agent $2 is not ready on $1"
}

RESULT_LINES=()
# Measures the agent process PID (server API at ADDR, agent AGENT, data dir DATA). SERVER_PID
# is the separate server's pid or empty.
measure() { # MODE PID ADDR AGENT DATA SERVER_PID
    local mode=$1 pid=$2 addr=$3 agent=$4 data=$5 spid=$6
    log "$mode: idle ${SETTLE}s with no containers"
    sleep "$SETTLE"
    local rss0 pss0 srv0=0
    rss0=$(kb "$pid" VmRSS)
    pss0=$(pss_kb "$pid")
    [[ -n $spid ]] && srv0=$(kb "$spid" VmRSS)
    log "$mode: agent VmRSS ${rss0} kB with 0 containers"

    local ref
    ref=$("$TEPUI" image import "$ARCHIVE" --agent "$agent" --addr "$addr" -o json | jq -r '.[0].reference')
    [[ -n $ref && $ref != null ]] || die "the image import returned no reference"
    local rss_img
    rss_img=$(kb "$pid" VmRSS)
    log "$mode: imported $ref (agent VmRSS now ${rss_img} kB); starting $TASKS tasks"
    local t0 i
    t0=$(date +%s.%N)
    for i in $(seq "$TASKS"); do
        "$TEPUI" task run "$ref" --name "sleep-$i" --agent "$agent" --mem 8 --cpus 0.01 --kill-grace 1 \
            --addr "$addr" -o json -- /bin/sleep 1000 >/dev/null
    done
    local running=0
    for _ in $(seq 600); do
        running=$("$TEPUI" task ls --addr "$addr" -o json | jq '[.[] | select(.state == "TASK_RUNNING")] | length')
        ((running >= TASKS)) && break
        sleep 0.2
    done
    ((running >= TASKS)) || die "only $running of $TASKS tasks are TASK_RUNNING"
    log "$mode: $TASKS tasks TASK_RUNNING after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s; idle ${SETTLE}s"
    sleep "$SETTLE"

    local rss50 pss50 hwm srv50=0
    rss50=$(kb "$pid" VmRSS)
    pss50=$(pss_kb "$pid")
    hwm=$(kb "$pid" VmHWM)
    [[ -n $spid ]] && srv50=$(kb "$spid" VmRSS)
    local shims nshims=0 shim_rss=0 shim_pss=0 shim_anon=0 ctr_rss=0 s c
    shims=$(live_shims "$data")
    for s in $shims; do
        nshims=$((nshims + 1))
        shim_rss=$((shim_rss + $(kb "$s" VmRSS)))
        shim_pss=$((shim_pss + $(pss_kb "$s")))
        shim_anon=$((shim_anon + $(kb "$s" RssAnon)))
        for c in $(children "$s"); do ctr_rss=$((ctr_rss + $(kb "$c" VmRSS))); done
    done
    log "$mode: agent VmRSS ${rss50} kB with $TASKS containers; $nshims shims, RSS sum ${shim_rss} kB, PSS sum ${shim_pss} kB"
    ((nshims == TASKS)) || log "warning: found $nshims live shims for $TASKS tasks"

    local line
    line=$(jq -cn --arg mode "$mode" --argjson tasks "$TASKS" --argjson nshims "$nshims" \
        --argjson rss0 "$rss0" --argjson rss_img "$rss_img" --argjson rss50 "$rss50" --argjson pss0 "$pss0" --argjson pss50 "$pss50" \
        --argjson hwm "$hwm" --argjson shim_rss "$shim_rss" --argjson shim_pss "$shim_pss" --argjson shim_anon "$shim_anon" \
        --argjson ctr_rss "$ctr_rss" --argjson breakdown "$(shim_breakdown "${shims%%$'\n'*}")" \
        --argjson srv0 "$srv0" --argjson srv50 "$srv50" '{
          mode: $mode, tasks: $tasks, shims: $nshims,
          agent_rss_kb_0: $rss0, agent_rss_kb_imported: $rss_img, agent_rss_kb_n: $rss50, agent_pss_kb_0: $pss0, agent_pss_kb_n: $pss50,
          agent_hwm_kb: $hwm,
          agent_kb_per_task: (($rss50 - $rss_img) / $tasks),
          shim_rss_breakdown_kb: $breakdown,
          shim_rss_kb_sum: $shim_rss, shim_rss_kb_each: ($shim_rss / ([$nshims, 1] | max)),
          shim_pss_kb_sum: $shim_pss, shim_pss_kb_each: ($shim_pss / ([$nshims, 1] | max)),
          shim_anon_kb_sum: $shim_anon, shim_anon_kb_each: ($shim_anon / ([$nshims, 1] | max)),
          container_rss_kb_sum: $ctr_rss,
          server_rss_kb_0: $srv0, server_rss_kb_n: $srv50}')
    echo "$line" >&2
    RESULT_LINES+=("$line")

    log "$mode: killing the tasks"
    kill_tasks
    for _ in $(seq 300); do
        [[ -z $(live_shims "$data") ]] && break
        sleep 0.2
    done
    [[ -z $(live_shims "$data") ]] || log "warning: shims still alive after the kills: $(live_shims "$data" | xargs)"
}

stop_daemons() {
    kill_tasks
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    API=""
}

start_daemon() { # LOG ARGS...: starts tepui ARGS in the background, logging to $WORK/LOG
    local logf=$WORK/$1
    shift
    "$TEPUI" "$@" >"$logf" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
}

wait_log() { # FILE TEXT PID
    for _ in $(seq 300); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || die "$(basename "$1"): the process exited"
        sleep 0.1
    done
    die "$(basename "$1"): no \"$2\" after 30 s"
}

export TEPUI_LOG=${TEPUI_LOG:-warn}

# --- 4. tepui dev -----------------------------------------------------------------------------
if [[ " $MODES " == *" dev "* ]]; then
    log "dev: tepui dev on $DEV_IP"
    start_daemon dev.log dev --bind "$DEV_IP" --data-dir "$WORK/dev" --name bench-dev
    DEV_PID=$LAST_PID
    API=$DEV_IP:5050
    wait_log "$WORK/dev.log" "ready in" "$DEV_PID"
    # The CLI calls below carry the management token the node printed and saved.
    export TEPUI_API_TOKEN=$(cat "$WORK/dev/api-token")
    wait_ready "$API" bench-dev
    measure dev "$DEV_PID" "$API" bench-dev "$WORK/dev" ""
    stop_daemons
fi

# --- 5. tepui server + tepui agent --------------------------------------------------------------
if [[ " $MODES " == *" agent "* ]]; then
    log "agent: tepui server --bootstrap on $SRV_IP, tepui agent on $AGENT_IP"
    start_daemon server.log server --bootstrap --bind "$SRV_IP" --data-dir "$WORK/server" --name bench-server
    SRV_PID=$LAST_PID
    API=$SRV_IP:5050
    wait_log "$WORK/server.log" "ready in" "$SRV_PID"
    [[ -s $WORK/server/agent-token ]] || die "no agent token in the server's data dir"
    export TEPUI_API_TOKEN=$(cat "$WORK/server/api-token")
    start_daemon agent.log agent --bind "$AGENT_IP" --data-dir "$WORK/agent" --name bench-agent \
        --join "$SRV_IP:5052" --token "$(cat "$WORK/server/agent-token")"
    AGENT_PID=$LAST_PID
    wait_log "$WORK/agent.log" "ready in" "$AGENT_PID"
    wait_ready "$API" bench-agent
    measure agent "$AGENT_PID" "$API" bench-agent "$WORK/agent" "$SRV_PID"
    stop_daemons
fi

# --- 6. results -------------------------------------------------------------------------------
ALL=$(printf '%s\n' "${RESULT_LINES[@]}" | jq -s '.')
[[ -n $RESULTS ]] && echo "$ALL" >"$RESULTS"
echo
echo "tepui $(tree_version), release; $(nproc) CPUs, kernel $(uname -r)"
echo "$ALL" | jq -r '
  def mb: . / 1024 * 10 | round / 10;
  ["process", "0 containers (MiB)", "image imported (MiB)", "\(.[0].tasks) containers (MiB)", "per container (kB)",
   "shim RSS each (MiB)", "shim PSS each (MiB)", "shim anon each (MiB)", "containers RSS sum (MiB)"],
  (.[] | [
    (if .mode == "dev" then "tepui dev (server+agent)" else "tepui agent" end),
    (.agent_rss_kb_0 | mb), (.agent_rss_kb_imported | mb), (.agent_rss_kb_n | mb), (.agent_kb_per_task | round),
    (.shim_rss_kb_each | mb), (.shim_pss_kb_each | mb), (.shim_anon_kb_each | mb), (.container_rss_kb_sum | mb)
  ]),
  (.[] | select(.mode == "agent") | ["tepui server (beside it)", (.server_rss_kb_0 | mb), "", (.server_rss_kb_n | mb), "", "", "", "", ""])
  | @tsv' | column -t -s $'\t'
