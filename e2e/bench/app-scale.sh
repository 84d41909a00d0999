#!/usr/bin/env bash
# Services at scale on one agent: how long a new app of N instances (Marathon's JSON, posted to
# `/v2/apps`) takes until its first instance runs and until all run, on a `tepui dev` node, and
# then a forced update of a running app of M instances to N. Each instance is `sleep 600` on
# the host's filesystem (cpus 0.001, mem 8), isolated in its own cgroups and namespaces.
#
# A benchmark, not a test: it prints the times. Marathon is not installable here, so there is
# no peer in the same run; the figures go with the command in docs/benchmarks.md.
#
# It builds tepui in release (CARGO_TARGET_DIR, default target/bench), starts `tepui dev` on
# 127.0.23.1 with its data dir under BENCH_TMP, and reads `/v2/apps/ID` until the counts are
# reached (each read is one HTTP request; the reads are the measuring client's, not tepui's).
# Everything it starts is stopped at exit, the instances with it. Root only.
#
# Settings (environment): INSTANCES=1000 SMALL=100 UPDATE_FROM=200 ROUNDS=3
#   BENCH_TMP=/var/tmp BENCH_TIMEOUT=1800
#
#   e2e/bench/app-scale.sh
set -euo pipefail

NAME=app-scale
INSTANCES=${INSTANCES:-1000}
SMALL=${SMALL:-100}
UPDATE_FROM=${UPDATE_FROM:-200}
ROUNDS=${ROUNDS:-3}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
IP=127.0.23.1
# shellcheck source=e2e/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "run as root: tasks need namespaces and cgroups"
bench_start
need_cmd curl curl
for p in 5050 5051 5052; do ! port_busy "$IP" "$p" || die "$IP:$p is already in use"; done
build_tepui

API=http://$IP:5050
# The agent offers enough ports for every instance.
spawn dev.log "$TEPUI" dev --data-dir "$WORK/data" --bind "$IP" --ports 20000-29999
wait_until 30 "tepui dev answers" curl -sf "$API/v1/health"
wait_until 30 "the agent registers" sh -c "curl -sf $API/v1/nodes | grep -q '\"ready\"'"

now_ms() { date +%s%3N; }

# counts APP: "running staged" of the app. A light reader: the apps list with the counts only
# (`/v2/apps/ID` embeds every task), read with curl and grep (no interpreter), since it runs 20
# times a second beside the deployment it measures.
counts() {
    curl -sf "$API/v2/apps?id=/$1" | grep -o '"tasks\(Running\|Staged\)": *[0-9]*' | head -2 |
        sort | sed 's/.*: *//' | tr '\n' ' '
    echo
}

# app ID N: Marathon's app JSON.
app() {
    printf '{"id":"/%s","cmd":"sleep 600","instances":%d,"cpus":0.001,"mem":8,"portDefinitions":[]}' "$1" "$2"
}

# deploy ID N METHOD: posts (or puts) the app; prints "first_ms all_ms" from the request.
deploy() {
    local id=$1 n=$2 method=$3 path first="" start running
    path=/v2/apps
    [[ $method == PUT ]] && path="/v2/apps/$id?force=true"
    start=$(now_ms)
    curl -sf -X "$method" -H 'content-type: application/json' -d "$(app "$id" "$n")" "$API$path" >/dev/null
    while :; do
        read -r running _ < <(counts "$id")
        [[ -z $first && $running -gt 0 ]] && first=$(($(now_ms) - start))
        ((running >= n)) && break
        (($(now_ms) - start < 600000)) || die "$id: $running of $n running after 600 s"
        sleep 0.05
    done
    echo "${first:-0} $(($(now_ms) - start))"
}

remove() {
    curl -sf -X DELETE "$API/v2/apps/$1?force=true" >/dev/null
    wait_until 300 "$1 removed" sh -c "test \"\$(curl -s -o /dev/null -w '%{http_code}' $API/v2/apps/$1)\" = 404"
    wait_until 300 "$1's instances ended" sh -c "! curl -sf $API/v1/tasks | grep -q '\"TASK_RUNNING\"'"
    # Their shims (and the kernel's teardown of their cgroups) are done before the next round.
    # (`[s]him` keeps pgrep from finding the shell that runs it.)
    wait_until 300 "$1's shims exited" sh -c "! pgrep -f -- '[s]him --sandbox $WORK/data/runtime/tasks/$1\.'"
}

log "tepui $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
printf '%-34s %12s %12s\n' "round" "first (ms)" "all (ms)"
for round in $(seq "$ROUNDS"); do
    read -r first all < <(deploy small$round "$SMALL" POST)
    printf '%-34s %12s %12s\n' "$round: new app, $SMALL instances" "$first" "$all"
    remove small$round
    read -r first all < <(deploy big$round "$INSTANCES" POST)
    printf '%-34s %12s %12s\n' "$round: new app, $INSTANCES instances" "$first" "$all"
    remove big$round
    deploy up$round "$UPDATE_FROM" POST >/dev/null
    read -r first all < <(deploy up$round "$INSTANCES" PUT)
    printf '%-34s %12s %12s\n' "$round: $UPDATE_FROM -> $INSTANCES, forced update" "$first" "$all"
    remove up$round
done
