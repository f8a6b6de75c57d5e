#!/usr/bin/env bash
# bandsync-server beside the Node reference (examples/node-reference, plain socket.io 4.8.1), in
# one run on this machine, printed as one markdown table:
#   1. fanout_floor: the kernel's CPU per delivery, with as many connections at 80 Hz;
#   2. loadgen against the release server, enhanced then legacy, a fresh server for each;
#   3. loadgen against the Node reference, the same way.
# Each loadgen run is S sessions × M members with every leader changing the tempo once a second,
# measured over the window after a 3 s warm-up (see examples/loadgen.rs).
#
#   examples/compare.sh                          # 100 × 8, 15 s windows: about two minutes
#   examples/compare.sh --sessions 10 --seconds 5
#   examples/compare.sh --pin                    # each server on core 0, the generator on core 1
#
# With --pin (taskset, two cores or more) each server gets core 0 to itself and the generator (and
# fanout_floor's reader) core 1: both servers get the same one core, and the figures are the
# server's rather than its contention with the generator on the same cores.
#
# Needs the release binaries (cargo build --release --examples) and Node with npm; installs the
# Node reference's packages (npm ci) when missing. The table goes to stdout, progress to stderr;
# every tool's full report is kept in the directory named at the end.
set -euo pipefail
# Figures are read and printed with a decimal point, whatever the user's locale.
export LC_NUMERIC=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_BIN=$ROOT/target/release/bandsync-server
LOADGEN=$ROOT/target/release/examples/loadgen
FLOOR=$ROOT/target/release/examples/fanout_floor
REFERENCE=$ROOT/examples/node-reference

SESSIONS=100
MEMBERS=8
SECONDS_=15
PIN=""

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    printf 'Options: --sessions N (default 100), --members N (default 8), --seconds N (default 15), --pin\n'
}

while [ $# -gt 0 ]; do
    case $1 in
        --sessions | --members | --seconds)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "$1 needs a positive whole number" >&2; exit 2; }
            case $1 in
                --sessions) SESSIONS=$2 ;;
                --members) MEMBERS=$2 ;;
                --seconds) SECONDS_=$2 ;;
            esac
            shift 2
            ;;
        --pin) PIN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
SOCKETS=$((SESSIONS * MEMBERS))

fail() { echo "compare.sh: $*" >&2; exit 1; }
step() { printf '==> %s\n' "$*" >&2; }

# With --pin, what runs on the server's core and what on the generator's; without, nothing.
SERVER_CORE=()
GENERATOR_CORE=()
if [ -n "$PIN" ]; then
    command -v taskset >/dev/null || fail "--pin needs taskset (util-linux)"
    [ "$(nproc)" -ge 2 ] || fail "--pin needs two cores"
    SERVER_CORE=(taskset -c 0)
    GENERATOR_CORE=(taskset -c 1)
fi

missing=()
for bin in "$SERVER_BIN" "$LOADGEN" "$FLOOR"; do [ -x "$bin" ] || missing+=("${bin#"$ROOT"/}"); done
if [ ${#missing[@]} -gt 0 ]; then
    fail "missing ${missing[*]}; build them first with: cargo build --release --examples"
fi
command -v node >/dev/null || fail "node is not installed (the reference server runs on it)"
command -v curl >/dev/null || fail "curl is not installed (used to wait for each server to be ready)"

if [ ! -f "$REFERENCE/node_modules/socket.io/package.json" ]; then
    step "installing the Node reference's packages (npm ci)"
    (cd "$REFERENCE" && npm ci --no-audit --no-fund --loglevel=error) >&2 || fail "npm ci failed in $REFERENCE"
fi

# One socket per connection on each side, plus the runtime's own; fanout_floor's writer holds all of
# its connections in one process.
needed=$((2 * SOCKETS + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$needed" ]; then
    ulimit -n "$needed" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$needed" ] ||
        echo "warning: open-file limit $(ulimit -n) is below the $needed this run needs" >&2
fi

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/bandsync-compare.XXXXXX")
SERVER_PID=""

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
# shellcheck disable=SC2317 # called by the trap
on_exit() {
    local status=$?
    stop_server
    [ "$status" -eq 0 ] || echo "compare.sh: stopped; logs in $LOGS" >&2
}
trap on_exit EXIT
trap 'exit 130' INT TERM

free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# start_server NAME PORT: starts one server in the background and waits until it answers /livez.
start_server() {
    local name=$1 port=$2 log=$LOGS/$1.server.log
    case $name in
        # From the logs directory, so that a developer's .env (REDIS_URL, …) is not picked up.
        rust-*) (cd "$LOGS" && RUST_LOG=warn HOST=127.0.0.1 PORT=$port exec "${SERVER_CORE[@]}" "$SERVER_BIN") >"$log" 2>&1 & ;;
        node-*) PORT=$port "${SERVER_CORE[@]}" node "$REFERENCE/server.mjs" >"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/livez" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; fail "$name server exited at start-up"; }
        sleep 0.1
    done
    cat "$log" >&2
    fail "$name server did not answer /livez on port $port within 10 s"
}

# run_load NAME VOCABULARY: a fresh server, loadgen against it, the server stopped.
run_load() {
    local name=$1-$2 port
    port=$(free_port)
    step "$name: ${SESSIONS} × ${MEMBERS} for ${SECONDS_} s"
    start_server "$name" "$port"
    if ! "${GENERATOR_CORE[@]}" "$LOADGEN" --url "http://127.0.0.1:$port" --sessions "$SESSIONS" --members "$MEMBERS" \
        --seconds "$SECONDS_" --vocabulary "$2" --server-pid "$SERVER_PID" >"$LOGS/$name.txt" 2>&1; then
        tail -n 20 "$LOGS/$name.txt" >&2
        fail "loadgen against $name failed (full output: $LOGS/$name.txt)"
    fi
    local log=$LOGS/$name.server.log during stopping
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the $name server died during the run (log: $log)"
    # A panic does not spoil the figures, but it is a bug to look into, so it is reported.
    during=$(grep -c ' panicked at ' "$log" || true)
    stop_server
    stopping=$(($(grep -c ' panicked at ' "$log" || true) - during))
    [ "$during" -eq 0 ] || echo "warning: the $name server logged $during panics during the run (log: $log)" >&2
    [ "$stopping" -eq 0 ] || echo "warning: the $name server logged $stopping panics while stopping (log: $log)" >&2
    if [ -z "$(quantile "$name" "stream latency" p99)" ] || [ -z "$(cpu "$name")" ]; then
        fail "could not read the figures of $LOGS/$name.txt (has loadgen's report changed?)"
    fi
    local joined
    joined=$(report "$name" sockets | sed -n 's/^\([0-9]*\) of .*/\1/p')
    [ "$joined" = "$SOCKETS" ] || echo "warning: $name: only ${joined:-0} of $SOCKETS sockets joined" >&2
}

# The figures of a loadgen report (examples/loadgen.rs): each line is a label padded to 20
# columns, then the figures. Each function prints nothing when its figure is not in the report.
# report RUN LABEL: the figures of one line.
report() { sed -n "s/^$2 \+//p" "$LOGS/$1.txt"; }
# quantile RUN LABEL p50|p99: from "p50 0.412 ms  p99 1.234 ms  p99.9 …".
quantile() { report "$1" "$2" | sed -n "s/.*$3 \([0-9.]*\) ms.*/\1/p"; }
# delivered RUN: stream packets per client against the nominal rate, in percent, from
# "position:sync 79.9/s per client (period 12.5 ms)".
delivered() {
    report "$1" "stream rate" | sed -n 's|.* \([0-9.]*\)/s per client (period \([0-9.]*\) ms).*|\1 \2|p' |
        awk '{ printf "%.1f", $1 * $2 / 10 }'
}
# cpu RUN: the server's CPU per delivery in µs, from "…; 9.56 s per million deliveries".
cpu() { report "$1" "server CPU" | sed -n 's/.*; \([0-9.]*\) s per million deliveries.*/\1/p'; }

# fmt DECIMALS VALUE: the value rounded, or "–" when it was not measured.
fmt() {
    case $2 in
        '' | -) printf '–' ;;
        *) printf "%.$1f" "$2" ;;
    esac
}

# ratio A B: A / B, or "–" when either was not measured.
ratio() {
    if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'
    else
        printf '–'
    fi
}

step "fanout_floor: $SOCKETS connections × 80 Hz for ${SECONDS_} s"
"${SERVER_CORE[@]}" "$FLOOR" --sockets "$SOCKETS" --rate 80 --seconds "$SECONDS_" >"$LOGS/fanout_floor.txt" 2>&1 &
FLOOR_PID=$!
if [ -n "$PIN" ]; then
    # Its reader is a child process, started at once: it goes to the generator's core.
    for _ in $(seq 50); do
        reader=$(pgrep -P "$FLOOR_PID" || true)
        [ -n "$reader" ] && break
        sleep 0.1
    done
    [ -n "$reader" ] && taskset -p -c 1 "$reader" >/dev/null
fi
wait "$FLOOR_PID" || { tail -n 20 "$LOGS/fanout_floor.txt" >&2; fail "fanout_floor failed"; }
# "per million   user 0.08 s + system 4.94 s = 5.02 s of CPU per million deliveries": seconds per
# million deliveries are microseconds per delivery.
FLOOR_US=$(sed -n 's/^per million.*= \([0-9.]*\) s of CPU per million deliveries.*/\1/p' "$LOGS/fanout_floor.txt")
[ -n "$FLOOR_US" ] || fail "could not read fanout_floor's figure (see $LOGS/fanout_floor.txt)"

for server in rust node; do
    for vocabulary in enhanced legacy; do
        run_load "$server" "$vocabulary"
    done
done

# column SERVER: one server's cells, a line for each row of the table.
column() {
    local e=$1-enhanced l=$1-legacy
    echo "$(fmt 2 "$(quantile "$e" "stream latency" p99)") ms"
    echo "$(fmt 1 "$(delivered "$e")") %"
    echo "$(fmt 2 "$(quantile "$e" "control latency" p50)") / $(fmt 2 "$(quantile "$e" "control latency" p99)") ms"
    echo "$(fmt 2 "$(quantile "$l" "stream latency" p99)") ms"
    echo "$(fmt 2 "$(quantile "$l" "control latency" p50)") / $(fmt 2 "$(quantile "$l" "control latency" p99)") ms"
    echo "$(fmt 2 "$(cpu "$e")") / $(fmt 2 "$(cpu "$l")")"
}
mapfile -t RUST < <(column rust)
mapfile -t NODE < <(column node)
ROWS=(
    "enhanced 80 Hz: stream latency p99"
    "enhanced: delivered %"
    "enhanced: control latency p50 / p99"
    "legacy 10 Hz: stream latency p99"
    "legacy: control latency p50 / p99"
    "CPU per delivery, enhanced / legacy (µs)"
)

echo
echo "$SESSIONS sessions × $MEMBERS, every leader changing the tempo once a second, ${SECONDS_} s windows;" \
    "$(nproc) cores$([ -n "$PIN" ] && echo ", each server on core 0 and the generator on core 1"), $(date -u '+%Y-%m-%d %H:%M UTC')."
echo
echo "| | bandsync-server | Node socket.io 4.8.1 |"
echo "|---|---|---|"
for i in "${!ROWS[@]}"; do
    echo "| ${ROWS[$i]} | ${RUST[$i]} | ${NODE[$i]} |"
done
echo
echo "Kernel floor (fanout_floor, $SOCKETS connections × 80 Hz): $(fmt 2 "$FLOOR_US") µs per delivery." \
    "Per delivery against it, enhanced / legacy: bandsync-server" \
    "$(ratio "$(cpu rust-enhanced)" "$FLOOR_US") / $(ratio "$(cpu rust-legacy)" "$FLOOR_US")," \
    "Node $(ratio "$(cpu node-enhanced)" "$FLOOR_US") / $(ratio "$(cpu node-legacy)" "$FLOOR_US")."
if grep -l 'machine CPU-bound' "$LOGS"/*-*.txt >/dev/null 2>&1; then
    echo
    echo "The machine was CPU-bound (server and generator over 90 % of all cores; delays include waits" \
        "for a core) in:" \
        "$(grep -l 'machine CPU-bound' "$LOGS"/*-*.txt | xargs -n1 basename | sed 's/\.txt$//' | paste -sd, -)."
fi
echo >&2
echo "full reports: $LOGS" >&2
