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
# Settings (environment): RUNS=50 WARMUP=5 BENCH_TMP=/var/tmp BENCH_TIMEOUT=1200
#   RESULTS=FILE   also write hyperfine's JSON there
#   TEPUI_BIN=PATH a release binary built already, instead of building one
#
#   e2e/bench/task-run.sh
set -euo pipefail

NAME=task-run
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
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

export TEPUI_ADDR=$IP:5050
spawn dev.log "$TEPUI" dev --data-dir "$WORK/data" --bind "$IP"
wait_until 30 "tepui dev answers" curl -sf "http://$IP:5050/v1/health"
wait_until 30 "the agent registers" sh -c "'$TEPUI' node ls -o json | grep -q '\"status\": *\"ready\"'"
agent=$("$TEPUI" node ls -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["name"])')
"$TEPUI" image import "$WORK/busybox.tar" --agent "$agent" >&2
"$TEPUI" task run bench/busybox:latest --follow -- /bin/true >&2

log "tepui $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(runc --version | head -1)"
args=(-N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/results.json")
# Each runc run needs a container id of its own: a shell picks one.
hyperfine "${args[@]}" \
    --command-name "tepui task run IMAGE --follow" "$TEPUI task run bench/busybox:latest --follow -- /bin/true" \
    --command-name "tepui task run --host --follow" "$TEPUI task run --host --follow -- /bin/true" \
    --command-name "runc run" "sh -c 'exec runc run --bundle $WORK/bundle b\$\$'"
[[ -n $RESULTS ]] && cp "$WORK/results.json" "$RESULTS"
# Medians, and each as a multiple of runc's.
python3 - "$WORK/results.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
base = next(r["median"] for r in results if r["command"] == "runc run")
print("| command | median (ms) | min (ms) | max (ms) | median / runc |")
print("| --- | ---: | ---: | ---: | ---: |")
for r in results:
    print(f"| {r['command']} | {r['median'] * 1000:.1f} | {r['min'] * 1000:.1f} | {r['max'] * 1000:.1f} | {r['median'] / base:.2f}x |")
EOF
