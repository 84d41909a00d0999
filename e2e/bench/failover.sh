#!/usr/bin/env bash
# Failover: how long after the leader of a 3-server cluster is killed (SIGKILL) or frozen
# (SIGSTOP for FREEZE seconds) a write through another member is acknowledged again: tepui side
# by side with etcd (3 members, default timings), in one run.
#
# A benchmark, not a test. It
#   1. installs etcd (Debian's etcd-server, etcd-client) and jq if they are missing;
#   2. builds tepui and the load generator (e2e/src/bin/writebench.rs) in release, in
#      CARGO_TARGET_DIR (default target/bench);
#   3. RUNS times, for each fault (kill, stop) and each system: starts a fresh cluster (tepui on
#      127.0.27.1-3, etcd on 127.0.28.1-3), finds the leader, and runs `writebench failover`
#      against a follower. That keeps one client writing through the follower in a loop (closed
#      loop: the next write when the last one is answered), signals the leader's process, and
#      from then on also starts a write every INTERVAL_MS ms (open loop: each its own request, so
#      a hung one does not hold up the next). It reports when the first write of each kind was
#      acknowledged, then reads every acknowledged write back through each live member (after
#      the SIGCONT for a stop), so a lost write or a stale read would show up as a missing read;
#   4. prints the medians side by side.
# Everything it starts is continued (SIGCONT), killed, and its temp dir removed, at exit.
# Only loopback addresses.
#
# Settings (environment):
#   RUNS=5 FAULTS="kill stop" SYSTEMS="tepui etcd" FREEZE=6 INTERVAL_MS=20
#   CARGO_TARGET_DIR=target/bench
#   TEPUI_BIN=PATH      run this tepui binary instead of the one built from the tree
#   BENCH_TMP=/var/tmp   where the data dirs go (a real disk: fsync costs what it costs)
#   BENCH_TIMEOUT=2400   seconds for the whole run, build included
#   RESULTS=FILE         also write every run's JSON line there
#
#   e2e/bench/failover.sh
set -euo pipefail

RUNS=${RUNS:-5}
FAULTS=${FAULTS:-kill stop}
SYSTEMS=${SYSTEMS:-tepui etcd}
FREEZE=${FREEZE:-6}
INTERVAL_MS=${INTERVAL_MS:-20}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-2400}
TEPUI_IPS=(127.0.27.1 127.0.27.2 127.0.27.3)
ETCD_IPS=(127.0.28.1 127.0.28.2 127.0.28.3)

NAME=failover
# shellcheck source=e2e/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The watchdog, the cleanup at exit, the work dir and the clusters' management token.
bench_start

# --- 1. tools -------------------------------------------------------------------------------
need_cmd etcd etcd-server
need_cmd etcdctl etcd-client
need_cmd jq jq
need_cmd curl curl

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

# --- 3. the clusters --------------------------------------------------------------------------
# Each start fills MEMBER_PID[ip] and MEMBER_ADDRS (HTTP addresses).
declare -A MEMBER_PID
MEMBER_ADDRS=()

voters() {
    local n
    n=$("$TEPUI" server members -o json --addr "${TEPUI_IPS[0]}:5050" | jq '[.[] | select(.voter)] | length')
    [[ $n -eq 3 ]]
}

start_tepui() {
    local d=$WORK/tepui i token
    rm -rf "$d" && mkdir -p "$d"
    "$TEPUI" server --bootstrap --data-dir "$d/s1" --bind "${TEPUI_IPS[0]}" --name s1 >"$WORK/tepui1.log" 2>&1 &
    PIDS+=($!)
    MEMBER_PID[${TEPUI_IPS[0]}]=$!
    wait_until 60 "the first server's token" test -s "$d/s1/server-token"
    wait_until 60 "the first server's API" curl -fsS "http://${TEPUI_IPS[0]}:5050/v1/health"
    token=$(cat "$d/s1/server-token")
    for i in 1 2; do
        "$TEPUI" join "${TEPUI_IPS[0]}:5052" --token "$token" --data-dir "$d/s$((i + 1))" \
            --bind "${TEPUI_IPS[$i]}" --name "s$((i + 1))" >"$WORK/tepui$((i + 1)).log" 2>&1 &
        PIDS+=($!)
        MEMBER_PID[${TEPUI_IPS[$i]}]=$!
    done
    wait_until 90 "3 tepui voters" voters
    MEMBER_ADDRS=()
    for i in 0 1 2; do MEMBER_ADDRS+=("${TEPUI_IPS[$i]}:5050"); done
}

start_etcd() {
    local d=$WORK/etcd i ip cluster="" addrs
    rm -rf "$d" && mkdir -p "$d"
    for i in 0 1 2; do cluster+="e$((i + 1))=http://${ETCD_IPS[$i]}:2380,"; done
    cluster=${cluster%,}
    for i in 0 1 2; do
        ip=${ETCD_IPS[$i]}
        etcd --name "e$((i + 1))" --data-dir "$d/e$((i + 1))" \
            --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
            --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token tepui-bench \
            --logger zap --log-level warn >"$WORK/etcd$((i + 1)).log" 2>&1 &
        PIDS+=($!)
        MEMBER_PID[$ip]=$!
    done
    addrs=$(printf '%s:2379,' "${ETCD_IPS[@]}")
    wait_until 60 "etcd health" etcdctl --endpoints "${addrs%,}" endpoint health
    MEMBER_ADDRS=()
    for i in 0 1 2; do MEMBER_ADDRS+=("${ETCD_IPS[$i]}:2379"); done
}

# One measurement on a fresh cluster: SYSTEM FAULT OUTFILE
measure() {
    local system=$1 fault=$2 out=$3 leader follower="" verify="" a
    "start_$system"
    leader=$("$BENCH" leader --target "$system" --addrs "$(IFS=,; echo "${MEMBER_ADDRS[*]}")")
    for a in "${MEMBER_ADDRS[@]}"; do
        [[ $a == "$leader" ]] && { [[ $fault == stop ]] && verify+="$a,"; continue; }
        [[ -z $follower ]] && follower=$a
        verify+="$a,"
    done
    [[ -n $follower ]] || die "no follower among ${MEMBER_ADDRS[*]} (leader $leader)"
    log "$system $fault: leader $leader (pid ${MEMBER_PID[${leader%:*}]}), writing through $follower"
    in_bg "$BENCH" failover --target "$system" --addr "$follower" --leader-pid "${MEMBER_PID[${leader%:*}]}" \
        --fault "$fault" --freeze "$FREEZE" --interval-ms "$INTERVAL_MS" --verify "${verify%,}" >"$out"
    sed -n 2p "$out" >&2
    stop_all
    rm -rf "$WORK/$system"
}

for ((r = 1; r <= RUNS; r++)); do
    log "run $r of $RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for fault in $FAULTS; do
        for system in $SYSTEMS; do
            measure "$system" "$fault" "$WORK/$system.$fault.$r.json"
        done
    done
done

# --- 4. report --------------------------------------------------------------------------------
[[ -z ${RESULTS:-} ]] || cat "$WORK"/*.json | grep '^{' >"$RESULTS"
echo
echo "Failover: 3 members on loopback; time from the fault to the first write acknowledged through a"
echo "follower. open: a new write every ${INTERVAL_MS} ms, each its own request; closed: one client writing in"
echo "a loop, the next write when the last is answered. SIGSTOP lasts ${FREEZE} s. Medians of $RUNS runs."
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
printf '%-6s %-5s %9s %-32s %11s %-32s %6s %7s\n' system fault 'open ms' '(runs)' 'closed ms' '(runs)' acked missing
for fault in $FAULTS; do
    for system in $SYSTEMS; do
        head -qn1 "$WORK/$system.$fault".*.json | jq -rs --arg s "$system" --arg f "$fault" '
            def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                               else (.[length / 2 - 1] + .[length / 2]) / 2 end;
            def runs(f): "(" + (map(f | if . == null then "-" else (round | tostring) end) | join(" ")) + ")";
            [($s), ($f), (map(.first_ack_ms) | median | round), runs(.first_ack_ms),
             (map(.closed_first_ack_ms // 1e9) | median | if . >= 1e9 then "-" else round end),
             runs(.closed_first_ack_ms), (map(.acked) | add), (map(.missing_reads) | add)] | @tsv' |
            awk -F'\t' '{printf "%-6s %-5s %9s %-32s %11s %-32s %6d %7d\n", $1, $2, $3, $4, $5, $6, $7, $8}'
    done
done
