#!/usr/bin/env bash
# A task from request to end: `tepui task run IMAGE --follow -- /bin/true` against a `tepui dev`
# node (placement, the Raft commit, the agent's launch, the container, the status updates and
# the followed output), side by side with `runc run` of the same busybox root filesystem, in
# one hyperfine run. Also `--host` (no image: the host's filesystem, still isolated).
#
# A benchmark, not a test. It installs hyperfine, runc and busybox-static if they are missing,
# builds tepui in release (CARGO_TARGET_DIR, default target/bench), starts `tepui dev` on
# 127.0.22.1 with its data dir under BENCH_TMP, imports a busybox image made here, and runs
# hyperfine. Everything it starts is stopped, and its temp dir removed, at exit. Root only
# (containers). Only loopback addresses.
#
# Settings (environment): RUNS=50 WARMUP=5 ROUNDS=1 BENCH_TMP=/var/tmp BENCH_TIMEOUT=1200
#   RESULTS=FILE   also write the pooled results (JSON) there
#   TEPUI_BIN=PATH a release binary built already, instead of building one
#   BASE_BIN=PATH  a second build to compare with (for example one before a change): its own
#                  `tepui dev` on 127.0.22.2, timed in the same rounds
#   ROUNDS=N       N hyperfine runs of RUNS/N runs per command, each starting with the next
#                  command in turn, so that no build always gets the same slice of a busy
#                  machine; the table pools every round
#
#   e2e/bench/task-run.sh
#   BASE_BIN=/tmp/tepui-before RUNS=40 ROUNDS=4 e2e/bench/task-run.sh
set -euo pipefail

NAME=task-run
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-1}
BASE_BIN=${BASE_BIN:-}
BASE_IP=127.0.22.2
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1200}
RESULTS=${RESULTS:-}
IP=127.0.22.1
# shellcheck source=e2e/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "run as root: containers need namespaces and cgroups"
bench_start
need_cmd hyperfine hyperfine
need_cmd runc runc
need_cmd curl curl
for p in 5050 5051 5052; do ! port_busy "$IP" "$p" || die "$IP:$p is already in use"; done
if [[ -n $BASE_BIN ]]; then
    [[ -x $BASE_BIN ]] || die "BASE_BIN=$BASE_BIN is not an executable"
    for p in 5050 5051 5052; do ! port_busy "$BASE_IP" "$p" || die "$BASE_IP:$p is already in use"; done
fi

build_tepui

log "a busybox image and a runc bundle of the same files"
busybox_image "$WORK/busybox.tar" bench/busybox:latest
mkdir -p "$WORK/bundle"
busybox_rootfs "$WORK/bundle/rootfs"
(cd "$WORK/bundle" && runc spec)
python3 - "$WORK/bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["root"]["readonly"] = False
json.dump(c, open(path, "w"))
EOF

# start_dev NAME BIN IP: a `tepui dev` node with the busybox image on its agent.
start_dev() {
    local name=$1 bin=$2 ip=$3 agent
    export TEPUI_ADDR=$ip:5050
    spawn "$name.log" "$bin" dev --data-dir "$WORK/$name" --bind "$ip"
    wait_until 30 "$name: tepui dev answers" curl -sf "http://$ip:5050/v1/health"
    wait_until 30 "$name: the agent registers" sh -c "'$bin' node ls -o json | grep -q '\"status\": *\"ready\"'"
    agent=$("$bin" node ls -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["name"])')
    "$bin" image import "$WORK/busybox.tar" --agent "$agent" >&2
    "$bin" task run bench/busybox:latest --follow -- /bin/true >&2
}
start_dev data "$TEPUI" "$IP"
[[ -n $BASE_BIN ]] && start_dev base "$BASE_BIN" "$BASE_IP"

log "tepui $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(runc --version | head -1)"
names=("tepui task run IMAGE --follow" "tepui task run --host --follow")
lines=("TEPUI_ADDR=$IP:5050 $TEPUI task run bench/busybox:latest --follow -- /bin/true"
    "TEPUI_ADDR=$IP:5050 $TEPUI task run --host --follow -- /bin/true")
if [[ -n $BASE_BIN ]]; then
    names+=("base: tepui task run IMAGE --follow" "base: tepui task run --host --follow")
    lines+=("TEPUI_ADDR=$BASE_IP:5050 $BASE_BIN task run bench/busybox:latest --follow -- /bin/true"
        "TEPUI_ADDR=$BASE_IP:5050 $BASE_BIN task run --host --follow -- /bin/true")
fi
# Each runc run needs a container id of its own: the shell's pid.
names+=("runc run")
lines+=("exec runc run --bundle $WORK/bundle b\$\$")
n=${#names[@]}
per_round=$(((RUNS + ROUNDS - 1) / ROUNDS))
for r in $(seq "$ROUNDS"); do
    log "round $r/$ROUNDS: $per_round runs each (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    cmds=()
    for i in $(seq 0 $((n - 1))); do
        k=$(((i + r - 1) % n))
        cmds+=(--command-name "${names[$k]}" "${lines[$k]}")
    done
    # Every command goes through `sh -c` (the address and runc's `$$`); hyperfine measures
    # the shell's start and subtracts it.
    hyperfine --style basic --warmup "$WARMUP" --runs "$per_round" --export-json "$WORK/round-$r.json" \
        "${cmds[@]}" >&2
done
# Pooled medians, and each as a multiple of runc's.
python3 - "$WORK" "$ROUNDS" "$RESULTS" <<'EOF'
import json, statistics, sys
work, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
times, order = {}, []
for r in range(1, rounds + 1):
    for res in json.load(open(f"{work}/round-{r}.json"))["results"]:
        if res["command"] not in times:
            order.append(res["command"])
        times.setdefault(res["command"], []).extend(res["times"])
rows = [{"command": c, "runs": len(times[c]), "median_ms": statistics.median(times[c]) * 1000,
         "min_ms": min(times[c]) * 1000, "max_ms": max(times[c]) * 1000} for c in order]
base = next(r["median_ms"] for r in rows if r["command"] == "runc run")
print("| command | runs | median (ms) | min (ms) | max (ms) | median / runc |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for r in sorted(rows, key=lambda r: r["command"]):
    print(f"| {r['command']} | {r['runs']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | {r['median_ms'] / base:.2f}x |")
if out:
    json.dump(rows, open(out, "w"), indent=1)
EOF
