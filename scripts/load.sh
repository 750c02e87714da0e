#!/usr/bin/env bash
# Intake under load, on loopback, with a baseline measured in the same run.
#
# Runs the release binary (`dingrelay serve`) on a temporary config (one dry-run robot, webhook
# `log`; one Alertmanager source with bearer authentication; the shipped alert rules) and loads it
# with wrk at a fixed concurrency with a real Alertmanager payload from the test corpus. Three runs,
# each against a fresh process and a fresh state directory:
#   baseline   examples/baseline.rs: axum, parses the JSON into a serde_json::Value, answers 202;
#   distinct   dingrelay, every request a distinct alert group (groupKey varied by the Lua
#              script): each 202 is one message committed to the outbox (SQLite, WAL,
#              synchronous=FULL), so this is the durable-write path;
#   identical  dingrelay, the same payload every time: after the first, each request is a
#              duplicate within dedup_window (202, "duplicates": 1, no insert).
# For each: requests/s, p50/p99 latency, non-202 answers and socket errors; for dingrelay also
# idle RSS (VmRSS once ready), peak RSS (VmHWM after the load), start-up time (exec to
# `/-/ready` answering 200; best and median of LOAD_STARTS starts), and a check that every 202 of
# the distinct run is a queued message (/metrics). Finally the fsync latency of the disk holding
# the state directory (what bounds a durable commit).
#
# Usage: scripts/load.sh            (from anywhere)
#
# Environment:
#   LOAD_SECONDS      seconds per run (default 20, at most 120)
#   LOAD_CONNECTIONS  concurrent connections (default 16, at most 256)
#   LOAD_THREADS      wrk threads (default 2)
#   LOAD_PAYLOAD      corpus file (default alertmanager/msteams.prom_post_request_2_alerts.json)
#   LOAD_STARTS       start-up measurements (default 5, at most 20)
#   LOAD_SKIP_BUILD   1: do not run `cargo build --release` (the binary and the example must exist)
#   CARGO_TARGET_DIR  where cargo builds (default target): the default binaries are looked for there
#   DINGRELAY_BIN     default $CARGO_TARGET_DIR/release/dingrelay (another build, to compare: an
#                     absolute path)
#   BASELINE_BIN      default $CARGO_TARGET_DIR/release/examples/baseline
#
# Needs wrk (installed with apt-get when missing and run as root), python3 and curl. Everything
# listens on 127.0.0.1 only; every process is killed and the temporary directory removed on exit.
# Exit status: 0 when the runs completed (targets are reported, not enforced), 2 on a setup failure.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

SECONDS_PER_RUN=${LOAD_SECONDS:-20}
CONNECTIONS=${LOAD_CONNECTIONS:-16}
THREADS=${LOAD_THREADS:-2}
PAYLOAD=${LOAD_PAYLOAD:-alertmanager/msteams.prom_post_request_2_alerts.json}
STARTS=${LOAD_STARTS:-5}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${DINGRELAY_BIN:-$TARGET_DIR/release/dingrelay}
BASELINE=${BASELINE_BIN:-$TARGET_DIR/release/examples/baseline}
BEARER=load-bearer-token

die() { echo "load: $*" >&2; exit 2; }

[[ $SECONDS_PER_RUN =~ ^[0-9]+$ ]] && ((SECONDS_PER_RUN >= 1 && SECONDS_PER_RUN <= 120)) ||
    die "LOAD_SECONDS must be 1..120"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] && ((CONNECTIONS >= 1 && CONNECTIONS <= 256)) ||
    die "LOAD_CONNECTIONS must be 1..256"
[[ $THREADS =~ ^[0-9]+$ ]] && ((THREADS >= 1 && THREADS <= CONNECTIONS)) ||
    die "LOAD_THREADS must be 1..LOAD_CONNECTIONS"
[[ $STARTS =~ ^[0-9]+$ ]] && ((STARTS >= 1 && STARTS <= 20)) || die "LOAD_STARTS must be 1..20"
BODY_FILE=$ROOT/tests/fixtures/corpus/$PAYLOAD
[[ -f $BODY_FILE ]] || die "no payload at $BODY_FILE"

if ! command -v wrk >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "load: installing wrk"
        timeout 300 apt-get install -y -qq wrk >/dev/null 2>&1 ||
            { timeout 300 apt-get update -qq >/dev/null 2>&1 && timeout 300 apt-get install -y -qq wrk >/dev/null 2>&1; } ||
            die "could not install wrk"
    else
        die "needs wrk (apt-get install wrk)"
    fi
fi
for tool in python3 curl timeout; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

if [[ ${LOAD_SKIP_BUILD:-0} != 1 ]]; then
    echo "load: cargo build --release --bin dingrelay --example baseline"
    timeout 1800 cargo build --release --quiet --bin dingrelay --example baseline ||
        die "the release build failed"
fi
# Relative paths are from the repository's root.
[[ $BIN == /* ]] || BIN=$ROOT/$BIN
[[ $BASELINE == /* ]] || BASELINE=$ROOT/$BASELINE
[[ -x $BIN ]] || die "no binary at $BIN"
[[ -x $BASELINE ]] || die "no baseline at $BASELINE"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dingrelay-load.XXXXXX")
PID=

# Stops the process we started last: TERM, up to 5 s, then KILL. Not our child (the start-up
# helper started it), so poll rather than wait.
stop() {
    [[ -n $PID ]] || return 0
    kill -TERM "$PID" 2>/dev/null || { PID=; return 0; }
    for _ in $(seq 50); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$PID" 2>/dev/null || true
    PID=
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---- helpers written to the temporary directory ---------------------------------------------------

# start.py PIDFILE LOG PORT CMD...: starts CMD (stdout to /dev/null, stderr to LOG), polls
# GET /-/ready on PORT every 0.2 ms over a raw socket, prints the milliseconds from just before
# the fork+exec to the first 200, and leaves the process running (its pid in PIDFILE).
cat >"$TMP/start.py" <<'PY'
import os, socket, subprocess, sys, time
pidfile, log, port, *cmd = sys.argv[1:]
port = int(port)
request = b"GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
with open(log, "ab") as err:
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
with open(pidfile, "w") as f:
    f.write(str(proc.pid))
deadline = t0 + 20 * 10**9
while True:
    if proc.poll() is not None:
        sys.exit(f"exited with {proc.returncode} before it was ready")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(request)
            status = s.recv(64).split(b" ", 2)[1:2]
        if status == [b"200"]:
            break
    except OSError:
        pass
    if time.perf_counter_ns() > deadline:
        sys.exit("not ready after 20 s")
    time.sleep(0.0002)
print(f"{(time.perf_counter_ns() - t0) / 1e6:.2f}")
PY

# The wrk script: LOAD_MODE=distinct varies the groupKey of every request (thread id and a
# counter), LOAD_MODE=identical posts the file as it is. Counts the answers that are not 202 and
# prints one machine-readable line.
cat >"$TMP/load.lua" <<'LUA'
local mode = os.getenv("LOAD_MODE") or "identical"
local file = assert(io.open(os.getenv("LOAD_BODY_FILE"), "rb"))
local body = file:read("*a")
file:close()
local marker = '"groupKey": "'
local at = body:find(marker, 1, true)
assert(at, "the payload has no groupKey")
local head = body:sub(1, at + #marker - 1)
local tail = body:sub(at + #marker)

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("LOAD_BEARER")

local threads = {}
local next_id = 0
function setup(thread)
    next_id = next_id + 1
    thread:set("id", next_id)
    table.insert(threads, thread)
end

counter = 0
not202 = 0
codes = ""
function request()
    if mode == "distinct" then
        counter = counter + 1
        return wrk.format(nil, nil, nil, head .. "load-" .. id .. "-" .. counter .. ":" .. tail)
    end
    return wrk.format()
end

function response(status, headers, body)
    if status ~= 202 then
        not202 = not202 + 1
        if #codes < 200 then codes = codes .. status .. " " end
    end
end

function done(summary, latency, requests)
    local bad, seen = 0, ""
    for _, thread in ipairs(threads) do
        bad = bad + thread:get("not202")
        seen = seen .. thread:get("codes")
    end
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d seconds=%.3f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f not202=%d socket_errors=%d codes=[%s]\n",
        summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
        latency.max / 1000, bad, e.connect + e.read + e.write + e.timeout, seen))
end
LUA

kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# CPU time (user + system) of PID so far, in microseconds.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1e6 / hz}' "/proc/$1/stat"; }
per_request() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (n > 0 ? (b - a) / n : 0)}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# Runs wrk against URL with MODE; prints its RESULT line.
load() {
    local url=$1 mode=$2
    LOAD_MODE=$mode LOAD_BODY_FILE=$BODY_FILE LOAD_BEARER=$BEARER \
        timeout $((SECONDS_PER_RUN + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" \
        --timeout 10s -s "$TMP/load.lua" "$url" >"$TMP/wrk.$mode.out" 2>&1 || {
        cat "$TMP/wrk.$mode.out" >&2
        die "wrk failed"
    }
    grep '^RESULT' "$TMP/wrk.$mode.out" | sed 's/^RESULT //'
}

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# Writes the config for a fresh dingrelay on PORT with state in DIR.
config() {
    local port=$1 dir=$2
    mkdir -p "$dir"
    cat >"$dir/rules.yaml" <<YAML
# Written by scripts/load.sh.
listen: 127.0.0.1:$port
state_dir: $dir/state
timezone: UTC
robots:
  ops:
    webhook: log          # dry run: the limiter and the outbox as usual, the request to stdout
sources:
  alertmanager:
    kind: alertmanager
    auth: { bearer: $BEARER }
rules:                    # as in the shipped rules.yaml
  - name: alerts-firing
    source: alertmanager
    when: event == "firing"
    to: ops
    template: alertmanager
    at:
      mobiles: ["{{ commonLabels.owner_mobile }}"]
  - name: alerts-resolved
    source: alertmanager
    when: event == "resolved"
    to: ops
    template: alertmanager
YAML
}

# Starts dingrelay on a fresh port and state dir; sets PID, PORT, DIR and STARTED (the start-up
# milliseconds). Not in a subshell: PID must reach stop().
start_relay() {
    local n=$1
    PORT=$(free_port)
    DIR=$TMP/relay.$n
    config "$PORT" "$DIR"
    python3 "$TMP/start.py" "$TMP/pid" "$DIR/stderr.log" "$PORT" \
        "$BIN" serve --config "$DIR/rules.yaml" >"$TMP/start.out" || {
        PID=$(cat "$TMP/pid" 2>/dev/null || true)
        tail -n 20 "$DIR/stderr.log" >&2
        die "dingrelay did not become ready"
    }
    PID=$(cat "$TMP/pid")
    STARTED=$(cat "$TMP/start.out")
}

echo "load: $(nproc) CPUs, $(uname -r); $CONNECTIONS connections, $THREADS wrk threads, ${SECONDS_PER_RUN} s per run"
echo "load: payload $PAYLOAD ($(wc -c <"$BODY_FILE") bytes)"

# ---- start-up --------------------------------------------------------------------------------------
starts=()
for ((i = 1; i <= STARTS; i++)); do
    start_relay "start$i"
    starts+=("$STARTED")
    stop
done
startup=$(printf '%s\n' "${starts[@]}" | sort -n | awk '{a[NR] = $1} END {printf "best %.2f ms, median %.2f ms, worst %.2f ms", a[1], a[int((NR + 1) / 2)], a[NR]}')
echo "load: dingrelay start to ready ($STARTS starts, fresh state dir each): $startup"

# ---- baseline --------------------------------------------------------------------------------------
PORT=$(free_port)
baseline_start=$(python3 "$TMP/start.py" "$TMP/pid" "$TMP/baseline.log" "$PORT" \
    "$BASELINE" "127.0.0.1:$PORT") || die "the baseline did not become ready"
PID=$(cat "$TMP/pid")
sleep 1
baseline_idle=$(kb "$PID" VmRSS)
cpu0=$(cpu_us "$PID")
base=$(load "http://127.0.0.1:$PORT/hooks/alertmanager" distinct)
cpu1=$(cpu_us "$PID")
[[ -n $base ]] || die "the baseline run gave no result"
baseline_peak=$(kb "$PID" VmHWM)
stop
echo "load: baseline   $base"
echo "load: baseline   start to ready ${baseline_start} ms; CPU $(per_request "$cpu0" "$cpu1" "$(field requests "$base")") µs per request; RSS idle $(mib "$baseline_idle") MiB, peak $(mib "$baseline_peak") MiB"

# ---- dingrelay -------------------------------------------------------------------------------------
declare -A rps
rps[baseline]=$(field rps "$base")
for mode in distinct identical; do
    start_relay "$mode"
    sleep 1
    idle=$(kb "$PID" VmRSS)
    cpu0=$(cpu_us "$PID")
    result=$(load "http://127.0.0.1:$PORT/hooks/alertmanager" "$mode")
    cpu1=$(cpu_us "$PID")
    [[ -n $result ]] || die "the $mode run gave no result"
    peak=$(kb "$PID" VmHWM)
    sleep 2
    after=$(kb "$PID" VmRSS)
    metrics=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics")
    queued=$(awk '/^dingrelay_messages_queued_total[{ ]/ {s += $NF} END {print s + 0}' <<<"$metrics")
    duplicate=$(awk '/^dingrelay_messages_duplicate_total[{ ]/ {s += $NF} END {print s + 0}' <<<"$metrics")
    stop
    rps[$mode]=$(field rps "$result")
    accepted=$(($(field requests "$result") - $(field not202 "$result") - $(field socket_errors "$result")))
    ratio=$(awk -v a="${rps[$mode]}" -v b="${rps[baseline]}" 'BEGIN {printf "%.1f%%", 100 * a / b}')
    echo "load: $(printf '%-9s' "$mode")  $result"
    echo "load: $(printf '%-9s' "$mode")  ${ratio} of baseline; start to ready ${STARTED} ms; CPU $(per_request "$cpu0" "$cpu1" "$(field requests "$result")") µs per request; RSS idle $(mib "$idle") MiB, peak $(mib "$peak") MiB, 2 s after $(mib "$after") MiB"
    echo "load: $(printf '%-9s' "$mode")  202s (complete answers): ~$accepted; /metrics: queued=$queued duplicate=$duplicate; stderr log $(wc -l <"$DIR/stderr.log") lines"
done

# ---- fsync on the state directory's disk -----------------------------------------------------------
python3 - "$TMP" <<'PY'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync.probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
block = os.urandom(4096)
times = []
for i in range(300):
    os.pwrite(fd, block, (i % 16) * 4096)
    t = time.perf_counter_ns()
    os.fsync(fd)
    times.append((time.perf_counter_ns() - t) / 1e6)
os.close(fd)
os.unlink(path)
times.sort()
print(f"load: fsync of a 4 KiB write on the state disk (300 times): median {statistics.median(times):.3f} ms, "
      f"p99 {times[int(len(times) * 0.99) - 1]:.3f} ms, max {times[-1]:.3f} ms")
PY
