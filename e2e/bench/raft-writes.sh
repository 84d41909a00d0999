#!/usr/bin/env bash
# Raft commits: committed writes/s and p50/p99 commit latency of a 3-server cluster on loopback,
# fsync on, 64 concurrent clients, small values: tepui side by side with etcd, in one run.
#
# A benchmark, not a test. It
#   1. installs etcd (Debian's etcd-server, etcd-client) and jq if they are missing;
#   2. builds tepui and the load generator (e2e/src/bin/writebench.rs) in release, in
#      CARGO_TARGET_DIR (default target/bench, apart from the usual target/ so builds do not wait on each other);
#   3. starts 3 tepui servers on 127.0.20.1-3 (the first bootstraps, the others join with its
#      server token), waits for 3 voters, and loads the leader's HTTP API;
#   4. stops them, starts a 3-member etcd cluster on 127.0.21.1-3 (default fsync behaviour) and
#      loads the leader's v3 JSON gateway the same way (ROUNDS times, alternating);
#   5. prints a side-by-side table and the tepui/etcd ratios.
# Everything it starts is killed, and its temp dir removed, at exit. Only loopback addresses.
#
# Settings (environment):
#   CONCURRENCY=64 DURATION=20 WARMUP=3 VALUE_SIZE=64
#   KEYS=0            write bench/<n % KEYS>; 0 makes every key new
#   ROUNDS=1          rounds of (tepui, etcd), each on fresh clusters; the table shows medians
#   PROGRESS=0        seconds between writes/s lines on stderr (0: none), to see stalls
#   CARGO_TARGET_DIR=target/bench
#   TEPUI_BIN=PATH      run this tepui binary instead of the one built from the tree
#   BENCH_TMP=/var/tmp  where the data dirs go: a real disk (on tmpfs, fsync is free)
#   BENCH_TIMEOUT=1800  seconds for the whole run, build included
#   RESULTS=FILE      also write both JSON result lines there
#
#   e2e/bench/raft-writes.sh
set -euo pipefail

CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
VALUE_SIZE=${VALUE_SIZE:-64}
KEYS=${KEYS:-0}
PROGRESS=${PROGRESS:-0}
ROUNDS=${ROUNDS:-1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
TEPUI_IPS=(127.0.20.1 127.0.20.2 127.0.20.3)
ETCD_IPS=(127.0.21.1 127.0.21.2 127.0.21.3)

NAME=raft-writes
# shellcheck source=e2e/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The watchdog, the cleanup at exit, the work dir and the clusters' management token.
bench_start

# --- 1. tools -------------------------------------------------------------------------------
need_cmd etcd etcd-server
need_cmd etcdctl etcd-client
need_cmd jq jq

# --- 2. build ---------------------------------------------------------------------------------
log "building tepui and writebench (release) in $CARGO_TARGET_DIR"
in_bg cargo build --manifest-path "$ROOT/Cargo.toml" --release --quiet -p tepui -p tepui-e2e \
    --bin tepui --bin writebench
# TEPUI_BIN runs another build of tepui (an older commit's, to compare) with the same load.
TEPUI=${TEPUI_BIN:-$CARGO_TARGET_DIR/release/tepui}
BENCH=$CARGO_TARGET_DIR/release/writebench
[[ -x $TEPUI && -x $BENCH ]] || die "build did not produce $TEPUI and $BENCH"

log "work dir $WORK ($(df -T "$WORK" | awk 'NR==2 {print $2}') on $(df "$WORK" | awk 'NR==2 {print $1}'))"

for ip in "${TEPUI_IPS[@]}"; do for p in 5050 5051 5052; do
    ! port_busy "$ip" "$p" || die "$ip:$p is already in use"
done; done
for ip in "${ETCD_IPS[@]}"; do for p in 2379 2380; do
    ! port_busy "$ip" "$p" || die "$ip:$p is already in use"
done; done

run_load() { # KIND ADDR OUTFILE
    log "loading $1 at $2: ${CONCURRENCY} clients, ${VALUE_SIZE} B values, ${WARMUP} s warm-up + ${DURATION} s"
    log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    in_bg "$BENCH" run --target "$1" --addr "$2" --concurrency "$CONCURRENCY" --duration "$DURATION" \
        --warmup "$WARMUP" --value-size "$VALUE_SIZE" --keys "$KEYS" --progress "$PROGRESS" >"$3"
    sed -n 2p "$3" >&2
}

# --- 3. the two clusters ---------------------------------------------------------------------
voters() {
    local n
    n=$("$TEPUI" server members -o json --addr "${TEPUI_IPS[0]}:5050" | jq '[.[] | select(.voter)] | length')
    [[ $n -eq 3 ]]
}

bench_tepui() { # OUTFILE; a new cluster on new data dirs
    local d=$WORK/tepui i
    rm -rf "$d" && mkdir -p "$d"
    log "starting 3 tepui servers on ${TEPUI_IPS[*]}"
    "$TEPUI" server --bootstrap --data-dir "$d/s1" --bind "${TEPUI_IPS[0]}" --name s1 >"$WORK/tepui1.log" 2>&1 &
    PIDS+=($!)
    wait_until 60 "the first server's token" test -s "$d/s1/server-token"
    wait_until 60 "the first server's API" curl -fsS "http://${TEPUI_IPS[0]}:5050/v1/health"
    local token
    token=$(cat "$d/s1/server-token")
    for i in 1 2; do
        "$TEPUI" join "${TEPUI_IPS[0]}:5052" --token "$token" --data-dir "$d/s$((i + 1))" \
            --bind "${TEPUI_IPS[$i]}" --name "s$((i + 1))" >"$WORK/tepui$((i + 1)).log" 2>&1 &
        PIDS+=($!)
    done
    wait_until 90 "3 tepui voters" voters
    local addrs leader
    addrs=$(printf '%s:5050,' "${TEPUI_IPS[@]}")
    leader=$("$BENCH" leader --target tepui --addrs "${addrs%,}")
    log "tepui: 3 voters, leader at $leader"
    run_load tepui "$leader" "$1"
    stop_all
    rm -rf "$d"
}

bench_etcd() { # OUTFILE; a new cluster on new data dirs
    local d=$WORK/etcd i ip cluster="" addrs leader
    rm -rf "$d" && mkdir -p "$d"
    for i in 0 1 2; do cluster+="e$((i + 1))=http://${ETCD_IPS[$i]}:2380,"; done
    cluster=${cluster%,}
    log "starting 3 etcd members on ${ETCD_IPS[*]} ($(etcd --version | head -n1))"
    for i in 0 1 2; do
        ip=${ETCD_IPS[$i]}
        etcd --name "e$((i + 1))" --data-dir "$d/e$((i + 1))" \
            --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
            --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token tepui-bench \
            --logger zap --log-level warn >"$WORK/etcd$((i + 1)).log" 2>&1 &
        PIDS+=($!)
    done
    addrs=$(printf '%s:2379,' "${ETCD_IPS[@]}")
    wait_until 60 "etcd health" etcdctl --endpoints "${addrs%,}" endpoint health
    leader=$("$BENCH" leader --target etcd --addrs "${addrs%,}")
    log "etcd: 3 members, leader at $leader"
    run_load etcd "$leader" "$1"
    stop_all
    rm -rf "$d"
}

# Rounds alternate the two systems, each on a fresh cluster, so that a change in the machine's
# background load during the run does not fall on one system only.
for ((r = 1; r <= ROUNDS; r++)); do
    ((ROUNDS == 1)) || log "round $r of $ROUNDS"
    bench_tepui "$WORK/tepui.$r.json"
    bench_etcd "$WORK/etcd.$r.json"
done

# --- 4. report --------------------------------------------------------------------------------
# One JSON line per system: the median of each number over the rounds (the round itself when 1).
summary() { # TARGET
    for ((r = 1; r <= ROUNDS; r++)); do head -n1 "$WORK/$1.$r.json"; done | jq -cs '
        def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                           else (.[length / 2 - 1] + .[length / 2]) / 2 end | . * 1000 | round / 1000;
        if length == 1 then .[0] else
        {target: .[0].target, rounds: length, concurrency: .[0].concurrency, value_size: .[0].value_size,
         window_s: .[0].window_s, writes_per_s: (map(.writes_per_s) | median),
         p50_ms: (map(.p50_ms) | median), p90_ms: (map(.p90_ms) | median), p99_ms: (map(.p99_ms) | median),
         p999_ms: (map(.p999_ms) | median), max_ms: (map(.max_ms) | median),
         errors: (map(.errors) | add), per_round_writes_per_s: map(.writes_per_s),
         per_round_p99_ms: map(.p99_ms)} end'
}
T=$(summary tepui)
E=$(summary etcd)
if [[ -n ${RESULTS:-} ]]; then
    for ((r = 1; r <= ROUNDS; r++)); do head -n1 "$WORK/tepui.$r.json"; head -n1 "$WORK/etcd.$r.json"; done >"$RESULTS"
fi
ratio() { jq -rn --argjson t "$T" --argjson e "$E" "if \$e.$1 > 0 then (\$t.$1 / \$e.$1 * 100 | round / 100) else \"-\" end"; }
echo
rounds_note=""
((ROUNDS == 1)) || rounds_note=", medians of $ROUNDS rounds"
echo "Raft commits: 3 servers on loopback, fsync on, $CONCURRENCY clients, $VALUE_SIZE B values, ${DURATION} s$rounds_note"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
printf '%-8s %12s %9s %9s %9s %9s %8s\n' system 'writes/s' 'p50 ms' 'p99 ms' 'p99.9 ms' 'max ms' errors
for j in "$T" "$E"; do
    jq -r '[.target, (.writes_per_s|round), .p50_ms, .p99_ms, .p999_ms, .max_ms, .errors] | @tsv' <<<"$j" |
        awk -F'\t' '{printf "%-8s %12d %9.2f %9.2f %9.2f %9.1f %8d\n", $1, $2, $3, $4, $5, $6, $7}'
done
echo "tepui/etcd: throughput x$(ratio writes_per_s), p50 x$(ratio p50_ms), p99 x$(ratio p99_ms)"
echo "$T"
echo "$E"
