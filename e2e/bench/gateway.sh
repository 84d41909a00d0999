#!/usr/bin/env bash
# Gateway: requests/s and latency of tepui's gateway against nginx and haproxy as reverse
# proxies to one backend, measured by wrk in one run, over plain HTTP and over HTTPS; and how
# long a label change takes to be served.
#
# A benchmark, not a test. It
#   1. installs wrk, nginx, haproxy, openssl, curl and jq (Debian) if they are missing;
#   2. builds the tepui binary in release (or takes TEPUI_BIN);
#   3. makes a self-signed certificate for bench.example.test with openssl;
#   4. starts `tepui dev` on 127.0.59.1 (gateway on :5080 and :5443, with that certificate as
#      its default one: wrk sends no usable SNI, see below), stores the certificate with
#      `tepui cert add --host bench.example.test` as well, and runs the Marathon app `/bench`
#      (labels HAPROXY_GROUP=external, HAPROXY_0_VHOST=bench.example.test; host networking, no
#      image): an nginx of its own (worker_processes 1, access_log off) serving a small static
#      file (its task id) on 127.0.59.1:$PORT0. That task is the one backend of every proxy;
#   5. starts nginx (worker_processes 2) on 127.0.59.2:8080 and :8443 and haproxy (nbthread 2)
#      on 127.0.59.3:8080 and :8443, as a user would set them up in front of that backend:
#      nginx with an upstream of kept-alive connections (HTTP/1.1, Connection ""), haproxy in
#      mode http with option forwardfor and http-reuse safe; each with its own config and pid
#      file under the work dir, in the foreground (`-g 'daemon off;'`, `-db`);
#   6. runs `wrk -t2 -c${CONNECTIONS} -d${LENGTH}s --latency -H 'Host: bench.example.test'`,
#      after a WARMUP-second run that is not counted, one after the other: direct to the
#      backend, then through the gateway, nginx and haproxy over HTTP, then through the same
#      three over HTTPS; ROUNDS times over (on two CPUs shared by wrk, proxy and backend, one
#      run of a case can differ from the next by 20%: the table gives medians, and each
#      case's lowest and highest requests/s);
#   7. changes the app's labels CHANGES times (a PUT of `/v2/apps/bench` adding a second
#      vhost, newN.example.test) and times, from the PUT's answer, the first 200 the gateway
#      gives for the new host: polled without pause, a new connection each time, through
#      bash's /dev/tcp and $EPOCHREALTIME (no process started per probe, so the resolution is
#      one probe's round trip, about a millisecond; a 200 at the first probe means the route
#      was served by the time the PUT answered);
#   8. prints requests/s, p50 and p99 (medians of the rounds), the ratios tepui/haproxy and
#      tepui/nginx, and the label-change median.
#
# All three proxies log nothing per request: the gateway's access log (target
# `tepui_gateway::access`, info; off unless `--gateway-access-log`) is also kept out by the
# log filter (TEPUI_LOG, and RUST_LOG for builds that read that), and the script warns if
# dev.log has access lines anyway; nginx has `access_log off` and haproxy no log target. So
# it measures proxying, not writing logs.
#
# HTTPS: wrk has no --resolve and sends the URL's host as SNI, here an IP address, which no
# certificate names; every proxy then serves its one (or default) certificate, the same
# bench.example.test certificate everywhere. That SNI selection by the stored certificate
# works is checked once with curl --resolve, outside the measurement. Connections are kept
# alive (nginx's and the backend's keepalive_requests raised so that none of them closes a
# connection after 1000 requests): HTTPS measures encryption, not handshakes.
#
# A label change is, as in Marathon, a new configuration: the app is restarted (rolling) after
# it. The gateway serves the new host from the labels at once, with the instance still
# running; the figure is that, and each change waits for its restart to end before the next.
#
# Everything runs on this machine's CPUs, wrk included: the figures compare the proxies with
# each other, on the same backend, in the same run. Only loopback. Needs root (tasks).
#
# Settings (environment):
#   LENGTH=15 WARMUP=3 CONNECTIONS=64   seconds per wrk run; seconds of warm-up; wrk connections
#   ROUNDS=3 CHANGES=5                  rounds of the seven cases; label changes timed (0: none)
#   ONLY="http-tepui http-haproxy"      measure only these cases (default: all seven)
#   GATEWAY_ARGS="--gateway-workers 1"  more flags for `tepui dev`
#   TEPUI_BIN=PATH                      a tepui binary built already
#   CARGO_TARGET_DIR=target/bench  BENCH_TMP=/var/tmp  BENCH_TIMEOUT=1800
#
#   e2e/bench/gateway.sh
set -euo pipefail

NAME=gateway
LENGTH=${LENGTH:-15}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-64}
CHANGES=${CHANGES:-5}
ROUNDS=${ROUNDS:-3}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
IP=127.0.59.1
NGINX_IP=127.0.59.2
HAPROXY_IP=127.0.59.3
HOST=bench.example.test
BRIDGE=tpbench-gw
# shellcheck source=e2e/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C

[[ $(id -u) -eq 0 ]] || die "run as root: tasks need namespaces and cgroups"
bench_start
DEV_PID=""
# The agent makes the bridge; it is removed once tepui has stopped, then lib.sh's cleanup
# stops the rest (the backend task's shim among them).
gateway_cleanup() {
    local rc=$?
    set +e
    if [[ -n $DEV_PID ]]; then
        kill -TERM "$DEV_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$DEV_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    remove_bridge "$BRIDGE"
    (exit "$rc")
    bench_cleanup
}
trap gateway_cleanup EXIT

need_cmd wrk wrk
need_cmd nginx nginx
need_cmd haproxy haproxy
need_cmd openssl openssl
need_cmd curl curl
need_cmd jq jq
for p in 5050 5051 5052 5053 5080 5443 8123; do ! port_busy "$IP" "$p" || die "$IP:$p is already in use"; done
for p in 8080 8443; do
    ! port_busy "$NGINX_IP" "$p" || die "$NGINX_IP:$p is already in use"
    ! port_busy "$HAPROXY_IP" "$p" || die "$HAPROXY_IP:$p is already in use"
done
build_tepui

# One certificate for every proxy.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -keyout "$WORK/bench.key" -out "$WORK/bench.crt" 2>/dev/null
cat "$WORK/bench.crt" "$WORK/bench.key" >"$WORK/bench.pem"

API=http://$IP:5050
FILTER="info,openraft=warn,h2=warn,tower=warn,hyper=warn,tepui_gateway::access=warn"
spawn dev.log env RUST_LOG="$FILTER" TEPUI_LOG="$FILTER" \
    "$TEPUI" dev --data-dir "$WORK/data" --bind "$IP" --name bench --ports 20000-20099 \
    --bridge "$BRIDGE" --bridge-subnet 10.214.59.0/24 --dns-upstream 127.0.59.9:53 \
    --gateway-cert "$WORK/bench.crt" --gateway-key "$WORK/bench.key" ${GATEWAY_ARGS:-}
DEV_PID=${PIDS[-1]}
wait_until 30 "tepui dev answers" curl -sf "$API/v1/health"
wait_until 30 "the agent registers" sh -c "curl -sf $API/v1/nodes | grep -q '\"ready\"'"
"$TEPUI" cert add --host "$HOST" --cert "$WORK/bench.crt" --key "$WORK/bench.key" --addr "$API" >&2

# The backend: nginx in the task's sandbox, written there by the task itself (a task without
# an image sees the host's /usr and /etc read-only, a private /tmp and its sandbox).
BACKEND_CMD=$(cat <<'SH'
set -e
mkdir -p "$MESOS_SANDBOX/www"
echo "$TEPUI_TASK_ID" >"$MESOS_SANDBOX/www/index.html"
cat >"$MESOS_SANDBOX/nginx.conf" <<EOF
worker_processes 1;
pid /tmp/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/html;
    keepalive_requests 1000000;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen @IP@:$PORT0;
        root $MESOS_SANDBOX/www;
    }
}
EOF
exec /usr/sbin/nginx -e stderr -c "$MESOS_SANDBOX/nginx.conf" -g 'daemon off;'
SH
)
BACKEND_CMD=${BACKEND_CMD//@IP@/$IP}

# app VHOSTS: the app's definition with HAPROXY_0_VHOST=VHOSTS.
app() {
    jq -n --arg cmd "$BACKEND_CMD" --arg vhost "$1" '{
        id: "/bench", instances: 1, cpus: 1, mem: 64, cmd: $cmd,
        networks: [{mode: "host"}], portDefinitions: [{port: 0, name: "http"}],
        labels: {HAPROXY_GROUP: "external", HAPROXY_0_VHOST: $vhost}}'
}
running_task() {
    curl -sf "$API/v2/apps/bench" | jq -er '[.app.tasks[] | select(.state == "TASK_RUNNING")] |
        if length == 1 then .[0] | "\(.id) \(.ports[0])" else empty end'
}
deployed() { [[ $(curl -sf "$API/v2/deployments" | jq length) == 0 ]]; }

curl -sf -X POST -H 'content-type: application/json' "$API/v2/apps" -d "$(app "$HOST")" >/dev/null
wait_until 60 "the backend task runs" running_task
wait_until 60 "the deployment ends" deployed
read -r TASK PORT < <(running_task)
BACKEND=$IP:$PORT
wait_until 30 "the backend answers" sh -c "curl -sf http://$BACKEND/ | grep -qx '$TASK'"
log "backend: task $TASK on $BACKEND"

# nginx, in front of the backend, as a user would write it.
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
user www-data;
worker_processes 2;
pid $WORK/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream bench {
        server $BACKEND;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen $NGINX_IP:8080;
        listen $NGINX_IP:8443 ssl;
        server_name $HOST;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $WORK/bench.crt;
        ssl_certificate_key $WORK/bench.key;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
nginx -t -q -e stderr -p "$WORK/nginx/" -c "$WORK/nginx.conf" || die "nginx does not take its config"
spawn nginx.log nginx -e stderr -p "$WORK/nginx/" -c "$WORK/nginx.conf" -g 'daemon off;'

# haproxy, likewise.
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse safe
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s

frontend bench
    bind $HAPROXY_IP:8080
    bind $HAPROXY_IP:8443 ssl crt $WORK/bench.pem
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    default_backend bench

backend bench
    server backend $BACKEND
EOF
haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy does not take its config"
spawn haproxy.log haproxy -db -f "$WORK/haproxy.cfg" -p "$WORK/haproxy.pid"

# Every way in answers with the backend's page before anything is measured; HTTPS by SNI
# (curl --resolve) with the certificate checked, and without SNI as wrk connects.
# answers TASK CURL_ARGS...: the page is TASK's.
answers() {
    local want=$1
    shift
    [[ $(curl -sf "$@") == "$want" ]]
}
wait_until 30 "the gateway routes $HOST" answers "$TASK" -H "Host: $HOST" "http://$IP:5080/"
wait_until 30 "nginx answers" answers "$TASK" -H "Host: $HOST" "http://$NGINX_IP:8080/"
wait_until 30 "haproxy answers" answers "$TASK" -H "Host: $HOST" "http://$HAPROXY_IP:8080/"
for at in "$IP:5443" "$NGINX_IP:8443" "$HAPROXY_IP:8443"; do
    wait_until 30 "$at serves $HOST's certificate by SNI" answers "$TASK" --cacert "$WORK/bench.crt" \
        --resolve "$HOST:${at##*:}:${at%:*}" "https://$HOST:${at##*:}/"
    wait_until 30 "$at answers without SNI" answers "$TASK" -k -H "Host: $HOST" "https://$at/"
    log "$at: $(openssl s_client -connect "$at" </dev/null 2>/dev/null | grep -m1 '^New,' || true)"
done

# measure KEY URL: one wrk run after a warm-up; its output goes to the log, and a line
# "requests/s p50_ms p99_ms errors" to $WORK/results-KEY.txt.
CASES=(http-direct http-tepui http-nginx http-haproxy https-tepui https-nginx https-haproxy)
if [[ -n ${ONLY:-} ]]; then
    for key in $ONLY; do [[ " ${CASES[*]} " == *" $key "* ]] || die "ONLY: no case $key (cases: ${CASES[*]})"; done
    read -r -a CASES <<<"$ONLY"
fi
declare -A URL=(
    [http-direct]="http://$BACKEND/" [http-tepui]="http://$IP:5080/"
    [http-nginx]="http://$NGINX_IP:8080/" [http-haproxy]="http://$HAPROXY_IP:8080/"
    [https-tepui]="https://$IP:5443/" [https-nginx]="https://$NGINX_IP:8443/"
    [https-haproxy]="https://$HAPROXY_IP:8443/"
)
measure() {
    local key=$1 url=$2
    in_bg wrk -t2 -c"$CONNECTIONS" -d"${WARMUP}s" -H "Host: $HOST" "$url" >/dev/null
    in_bg wrk -t2 -c"$CONNECTIONS" -d"${LENGTH}s" --latency -H "Host: $HOST" "$url" >"$WORK/wrk.txt"
    sed "s/^/    /" "$WORK/wrk.txt" >&2
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000
            if (v ~ /s$/) return v * 1000
            return v + 0
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
        END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, errors }
    ' "$WORK/wrk.txt" >>"$WORK/results-$key.txt"
}

for round in $(seq "$ROUNDS"); do
    for key in "${CASES[@]}"; do
        log "round $round/$ROUNDS, $key: ${URL[$key]}"
        measure "$key" "${URL[$key]}"
    done
done

access_lines=$(grep -c 'tepui_gateway::access' "$WORK/dev.log" || true)
((access_lines < 10)) || log "warning: the gateway logged $access_lines access lines: its log filter did not apply"

# Label changes. probe_ok HOST DEADLINE_US: GETs / through the gateway with Host: HOST on a
# new connection each time (bash's /dev/tcp: no process started per probe) until one answers
# 200; sets OK_AT (microseconds), OK_BODY and PROBES (how many it took). Fails at the
# deadline.
now_us() { echo "${EPOCHREALTIME/[.,]/}"; }
probe_ok() {
    local host=$1 deadline=$2 status
    PROBES=0
    while :; do
        PROBES=$((PROBES + 1))
        if { exec 3<>"/dev/tcp/$IP/5080"; } 2>/dev/null; then
            printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
            status=""
            read -r -t 5 _ status _ <&3 || true
            if [[ $status == 200 ]]; then
                OK_AT=${EPOCHREALTIME/[.,]/}
                OK_BODY=$(tail -n 1 <&3 | tr -d '\r')
                exec 3<&-
                return 0
            fi
            exec 3<&-
        fi
        ((${EPOCHREALTIME/[.,]/} < deadline)) || return 1
    done
}

AFTER=()
SENT=()
OLD=0
FIRST=0
for i in $(seq "$CHANGES"); do
    new=new$i.example.test
    read -r before _ < <(running_task)
    body=$(app "$HOST,$new")
    sent=$(now_us)
    curl -sf -X PUT -H 'content-type: application/json' "$API/v2/apps/bench" -d "$body" >/dev/null
    answered=${EPOCHREALTIME/[.,]/}
    probe_ok "$new" $((answered + 30000000)) || die "$new not served within 30 s of the PUT"
    AFTER+=($((OK_AT - answered)))
    SENT+=($((OK_AT - sent)))
    [[ $OK_BODY == "$before" ]] && OLD=$((OLD + 1))
    ((PROBES == 1)) && FIRST=$((FIRST + 1))
    log "change $i: $new served $(((OK_AT - answered) / 1000)) ms after the PUT's answer" \
        "($(((OK_AT - sent) / 1000)) ms after it was sent; PUT took $(((answered - sent) / 1000)) ms)," \
        "at probe $PROBES, by $([[ $OK_BODY == "$before" ]] && echo "the instance running before" || echo "$OK_BODY")"
    # The restart that follows the change ends before the next one.
    wait_until 120 "change $i's deployment ends" deployed
    wait_until 60 "change $i's instance runs" running_task
    read -r now_task _ < <(running_task)
    wait_until 60 "change $i's instance serves $new" answers "$now_task" -H "Host: $new" "http://$IP:5080/"
    [[ $now_task != "$before" ]] || log "change $i: the instance was not replaced"
done
median_ms() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.1f", m / 1000 }'; }
range_ms() { printf '%s\n' "$@" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END {
    printf "%.1f-%.1f", lo / 1000, hi / 1000 }'; }

# summary KEY: the median requests/s, p50 and p99 of KEY's rounds, the lowest and highest
# requests/s, and the errors of all rounds.
summary() {
    awk '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        { rps[NR] = $1; p50[NR] = $2; p99[NR] = $3; errors += $4
          if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1 }
        END { printf "%.0f %.2f %.2f %d %d-%d\n", median(rps, NR), median(p50, NR), median(p99, NR), errors, lo, hi }
    ' "$WORK/results-$1.txt"
}
declare -A RESULT
for key in "${CASES[@]}"; do RESULT[$key]=$(summary "$key"); done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
field() { echo "${RESULT[$1]:-}" | cut -d' ' -f"$2"; }
printf '\nwrk -t2 -c%s -d%ss --latency, %s round(s) of every case in turn, medians; one backend (nginx, 1 worker, a %s-byte file)\n' \
    "$CONNECTIONS" "$LENGTH" "$ROUNDS" "$(curl -sf "http://$IP:5080/" -H "Host: $HOST" | wc -c)"
printf '%-22s %11s %15s %8s %8s %7s\n' "" "requests/s" "(lowest-highest)" "p50 ms" "p99 ms" "errors"
for key in "${CASES[@]}"; do
    read -r rps p50 p99 errors range <<<"${RESULT[$key]:-}"
    proto=${key%%-*}
    who=${key#*-}
    [[ $who == tepui ]] && who="tepui gateway"
    printf '%-22s %11s %15s %8s %8s %7s\n' "${proto^^} $who" "$rps" "($range)" "$p50" "$p99" "$errors"
done
printf '\n%-18s %-26s %s\n' "" "HTTP" "HTTPS"
for peer in haproxy nginx; do
    printf '%-18s %-26s %s\n' "tepui / $peer" \
        "req/s $(ratio "$(field "http-tepui" 1)" "$(field "http-$peer" 1)"), p99 $(ratio "$(field "http-tepui" 3)" "$(field "http-$peer" 3)")" \
        "req/s $(ratio "$(field "https-tepui" 1)" "$(field "https-$peer" 1)"), p99 $(ratio "$(field "https-tepui" 3)" "$(field "https-$peer" 3)")"
done
if ((CHANGES > 0)); then
    printf '\nlabel change to the new host served (%s changes): median %s ms after the PUT answered (range %s),\n' \
        "$CHANGES" "$(median_ms "${AFTER[@]}")" "$(range_ms "${AFTER[@]}")"
    printf '  %s ms after it was sent (range %s); %s of %s at the first probe, %s of %s by the instance already running\n' \
        "$(median_ms "${SENT[@]}")" "$(range_ms "${SENT[@]}")" "$FIRST" "$CHANGES" "$OLD" "$CHANGES"
fi
curl -sf -X DELETE "$API/v2/apps/bench?force=true" >/dev/null || true
