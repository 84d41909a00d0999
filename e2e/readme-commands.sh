#!/usr/bin/env bash
# Runs the two commands of README.md's "The two commands" section, as they are written there, so
# that the README and CI cannot drift apart:
#   run   the first command (`cargo run --release -- dev`): builds the binary, starts it, waits
#         until http://127.0.0.1:5050/v1/health answers (READY_TIMEOUT seconds, 60 by default),
#         then stops it with SIGTERM and expects a clean exit (STOP_TIMEOUT, 30 by default);
#   test  the second command (`cargo test --workspace`).
#
# Usage: e2e/readme-commands.sh [run|test|all]   (all by default: run, then test)
#
# The dev cluster keeps its state in a temp dir (TEPUI_DATA_DIR, which `tepui dev` reads), not
# in ~/.local/share/tepui. Port 5050 on 127.0.0.1 must be free: a `tepui dev` already running
# there would answer the health check for the one under test.
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
HEALTH_URL="http://127.0.0.1:5050/v1/health"

log() { echo "readme-commands: $*" >&2; }
die() { log "$*"; exit 1; }

# The dev cluster's process group, while it runs: killed on any way out of this script.
dev_pgid=""
trap '[ -z "$dev_pgid" ] || kill -KILL -- "-$dev_pgid" 2>/dev/null || true' EXIT

# The shell blocks of the section, one command each, in order.
commands=()
while IFS= read -r line; do
    commands+=("$line")
done < <(awk '
    /^## / { in_section = ($0 == "## The two commands"); next }
    in_section && /^```/ { in_block = !in_block; next }
    in_section && in_block && NF { print }
' README.md)
[ "${#commands[@]}" -eq 2 ] ||
    die "README.md's \"The two commands\" section must hold two one-line shell blocks; found: ${commands[*]:-none}"
run_cmd="${commands[0]}"
test_cmd="${commands[1]}"

run_the_run_command() {
    # What comes before `&& cargo run` (installing the build's packages) runs first, on its own.
    local cargo_cmd="$run_cmd"
    if [[ $run_cmd == *" && cargo run "* ]]; then
        local prefix="${run_cmd%% && cargo run *}"
        cargo_cmd="cargo run ${run_cmd#* && cargo run }"
        log "$prefix"
        bash -c "$prefix"
    fi
    # The build first, so that the health deadline counts only the start: the same cargo
    # invocation up to `--`, with `run` as `build`.
    case "$cargo_cmd" in
        "cargo run "*" -- "*) ;;
        *) die "the run command must be \`[SETUP &&] cargo run ... -- ARGS\`: $run_cmd" ;;
    esac
    local build_cmd="${cargo_cmd%% -- *}"
    build_cmd="cargo build ${build_cmd#cargo run }"
    log "$build_cmd"
    bash -c "$build_cmd"

    if curl -s -o /dev/null --max-time 2 "$HEALTH_URL"; then
        die "something already answers on $HEALTH_URL; stop it first"
    fi
    local work
    work="$(mktemp -d -t tepui-readme-XXXXXX)"
    log "$run_cmd   (data dir $work/data, output in $work/out)"
    # Its own session: the signal goes to its process group, and to nothing else. `exec` keeps
    # the pid the command's own (cargo run execs the binary).
    TEPUI_DATA_DIR="$work/data" setsid bash -c "exec $cargo_cmd" >"$work/out" 2>&1 &
    local pid=$!
    dev_pgid=$pid
    local started=$SECONDS healthy=""
    while [ $((SECONDS - started)) -lt "$READY_TIMEOUT" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$work/out" >&2
            die "\`$run_cmd\` exited before it answered on $HEALTH_URL"
        fi
        if healthy="$(curl -sf --max-time 2 "$HEALTH_URL")"; then
            break
        fi
        healthy=""
        sleep 0.2
    done
    if [ -z "$healthy" ]; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        cat "$work/out" >&2
        die "\`$run_cmd\` did not answer on $HEALTH_URL within ${READY_TIMEOUT}s"
    fi
    log "healthy after $((SECONDS - started))s: $healthy"
    # The answer came from this run: it bootstraps its cluster in the data dir given (the API
    # answers health while the first election and the bootstrap writes are still going on).
    while [ ! -s "$work/data/agent-token" ] && [ $((SECONDS - started)) -lt "$READY_TIMEOUT" ] \
        && kill -0 "$pid" 2>/dev/null; do
        sleep 0.2
    done
    [ -s "$work/data/agent-token" ] || die "no agent token in $work/data: who answered on $HEALTH_URL?"
    log "bootstrapped after $((SECONDS - started))s"
    grep -q '"status":"ok"' <<<"$healthy" || die "unexpected health answer: $healthy"

    kill -TERM -- "-$pid"
    local stopping=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        if [ $((SECONDS - stopping)) -ge "$STOP_TIMEOUT" ]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
            cat "$work/out" >&2
            die "\`$run_cmd\` did not stop within ${STOP_TIMEOUT}s of SIGTERM"
        fi
        sleep 0.2
    done
    local code=0
    wait "$pid" || code=$?
    if [ "$code" -ne 0 ]; then
        cat "$work/out" >&2
        die "\`$run_cmd\` exited $code after SIGTERM"
    fi
    dev_pgid=""
    log "stopped cleanly after $((SECONDS - stopping))s"
    rm -rf "$work"
}

run_the_test_command() {
    log "$test_cmd"
    bash -c "$test_cmd"
}

case "$what" in
    run) run_the_run_command ;;
    test) run_the_test_command ;;
    all)
        run_the_run_command
        run_the_test_command
        ;;
    *) die "usage: $0 [run|test|all]" ;;
esac
