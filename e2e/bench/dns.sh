#!/usr/bin/env bash
# DNS: queries per second and latency of tepui's DNS against unbound serving the same names,
# measured by dnsperf in one run, for names in the cluster domain and for names tepui forwards.
#
# A benchmark, not a test. It
#   1. installs dnsperf, unbound and curl (Debian) if they are missing;
#   2. builds the tepui binary in release (or takes TEPUI_BIN);
#   3. starts unbound on 127.0.55.2:5053 (2 threads, SO_REUSEPORT, no DNSSEC validation,
#      nothing recursive: every name it answers is local data), with the same names tepui
#      serves for its domain (`leader.mesos`, `master.mesos`, `slave.mesos`, the apps'
#      `APP.marathon.mesos` A records and `_APP._tcp.marathon.mesos` SRV records, read from
#      tepui's own /v1/dns/records once they exist) and NAMES names under `example.test`;
#   4. starts `tepui dev` on 127.0.55.1 with `--dns-upstream 127.0.55.2:5053`, and APPS
#      Marathon apps (`sleep 600`, no image) so that the domain has task names;
#   5. runs dnsperf (one client, the default 100 queries outstanding, LENGTH seconds) four
#      times, one after the other: cluster names against tepui and against unbound, then
#      `example.test` names against tepui (forwarded to unbound once, then from its cache)
#      and against unbound;
#   6. prints queries/s and average latency, and the ratios.
# Only loopback. Needs root (tasks).
#
# Settings (environment):
#   LENGTH=20 APPS=20 NAMES=1000   seconds per dnsperf run; apps; forwarded names
#   TEPUI_BIN=PATH                 a tepui binary built already
#   CARGO_TARGET_DIR=target/bench  BENCH_TMP=/var/tmp  BENCH_TIMEOUT=1800
#
#   e2e/bench/dns.sh
set -euo pipefail

NAME=dns
LENGTH=${LENGTH:-20}
APPS=${APPS:-20}
NAMES=${NAMES:-1000}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
IP=127.0.55.1
UNBOUND_IP=127.0.55.2
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "run as root: tasks need namespaces and cgroups"
bench_start
need_cmd curl curl
need_cmd dnsperf dnsperf
need_cmd unbound unbound
need_cmd jq jq
for p in 5050 5051 5052 5053; do ! port_busy "$IP" "$p" || die "$IP:$p is already in use"; done
build_tepui

API=http://$IP:5050
# tepui first: unbound's zone copies tepui's records.
spawn dev.log "$TEPUI" dev --data-dir "$WORK/data" --bind "$IP" --ports 20000-20999 \
    --dns-upstream "$UNBOUND_IP:5053"
wait_until 30 "tepui dev answers" curl -sf "$API/v1/health"
wait_until 30 "the agent registers" sh -c "curl -sf $API/v1/nodes | grep -q '\"ready\"'"
for i in $(seq "$APPS"); do
    curl -sf -X POST -H 'content-type: application/json' "$API/v2/apps" \
        -d "{\"id\":\"/app$i\",\"cmd\":\"sleep 600\",\"cpus\":0.001,\"mem\":8,\"portDefinitions\":[{\"port\":0}]}" >/dev/null
done
wait_until 120 "every app's task in DNS" sh -c \
    "[ \$(curl -sf $API/v1/dns/records | jq '[.records[] | select(.type == \"A\") | select(.name | test(\"^app[0-9]+[.]marathon[.]mesos[.]$\"))] | length') -ge $APPS ]"

# unbound: the same records for the domain, plus example.test, all local data.
records=$(curl -sf "$API/v1/dns/records")
{
    cat <<EOF
server:
  interface: $UNBOUND_IP@5053
  port: 5053
  num-threads: 2
  so-reuseport: yes
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: "$WORK/unbound-own.log"
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  do-not-query-localhost: yes
  local-zone: "mesos." static
  local-zone: "example.test." static
EOF
    echo "$records" | jq -r '.records[] | select(.type == "A" or .type == "SRV") |
        "  local-data: \"\(.name) \(.ttl) IN \(.type) \(.data)\""'
    for i in $(seq "$NAMES"); do
        printf '  local-data: "www%d.example.test. 60 IN A 127.0.%d.%d"\n' "$i" $((i / 250)) $((i % 250 + 1))
    done
} >"$WORK/unbound.conf"
unbound-checkconf "$WORK/unbound.conf" >/dev/null
spawn unbound.log unbound -d -c "$WORK/unbound.conf"
echo 'leader.mesos A' >"$WORK/probe.queries"
wait_until 30 "unbound answers" sh -c "dnsperf -s $UNBOUND_IP -p 5053 -d $WORK/probe.queries -n 1 | grep -q 'Queries completed: *1 '"

# The query files: every A and SRV name of the domain, and the forwarded names.
echo "$records" | jq -r '.records[] | select(.type == "A" or .type == "SRV") | "\(.name | rtrimstr(".")) \(.type)"' |
    sort -u >"$WORK/cluster.queries"
for i in $(seq "$NAMES"); do echo "www$i.example.test A"; done >"$WORK/forwarded.queries"
log "$(wc -l <"$WORK/cluster.queries") cluster names, $NAMES forwarded names"

# perf SERVER PORT FILE: queries/s and average latency (ms) of one dnsperf run.
perf() {
    local out
    out=$(in_bg dnsperf -s "$1" -p "$2" -d "$3" -l "$LENGTH" 2>&1)
    local lost qps lat
    lost=$(echo "$out" | awk '/Queries lost:/ {print $3}')
    qps=$(echo "$out" | awk '/Queries per second:/ {print $4}')
    lat=$(echo "$out" | awk '/Average Latency/ {print $4 * 1000}')
    echo "$qps $lat $lost"
}
# A first pass through tepui fills its cache of forwarded names (their TTL outlasts a run).
in_bg dnsperf -s "$IP" -p 5053 -d "$WORK/forwarded.queries" -n 1 >/dev/null 2>&1

read -r t_qps t_lat t_lost < <(perf "$IP" 5053 "$WORK/cluster.queries")
read -r u_qps u_lat u_lost < <(perf "$UNBOUND_IP" 5053 "$WORK/cluster.queries")
read -r tf_qps tf_lat tf_lost < <(perf "$IP" 5053 "$WORK/forwarded.queries")
read -r uf_qps uf_lat uf_lost < <(perf "$UNBOUND_IP" 5053 "$WORK/forwarded.queries")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-28s %12s %12s %10s\n' "names / server" "queries/s" "avg ms" "lost"
printf '%-28s %12s %12s %10s\n' "cluster / tepui" "$t_qps" "$t_lat" "$t_lost"
printf '%-28s %12s %12s %10s\n' "cluster / unbound" "$u_qps" "$u_lat" "$u_lost"
printf '%-28s %12s %12s %10s\n' "forwarded / tepui" "$tf_qps" "$tf_lat" "$tf_lost"
printf '%-28s %12s %12s %10s\n' "forwarded / unbound" "$uf_qps" "$uf_lat" "$uf_lost"
printf '\ntepui / unbound queries/s: cluster %s, forwarded %s\n' "$(ratio "$t_qps" "$u_qps")" "$(ratio "$tf_qps" "$uf_qps")"
printf 'tepui / unbound latency:   cluster %s, forwarded %s\n' "$(ratio "$t_lat" "$u_lat")" "$(ratio "$tf_lat" "$uf_lat")"
curl -sf -X DELETE "$API/v2/apps/app1" >/dev/null || true
