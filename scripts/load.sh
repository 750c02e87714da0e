#!/usr/bin/env bash
# Intake and routing under load, on loopback, with a baseline measured in the same run.
#
# Runs the release binary (`dingrelay serve`) on a temporary config (one dry-run robot, webhook
# `log`; one Alertmanager source with bearer authentication; the shipped alert rules) and loads it
# with wrk at a fixed concurrency with a real Alertmanager payload from the test corpus (default:
# 12 alerts, 5 KB). Every dingrelay run gets a fresh process and a fresh state directory, removed
# after the run. Intake only verifies, parses, computes the dedup key and appends the webhook to
# the event log (`events` in `<state_dir>/outbox.sqlite3`, WAL, synchronous=FULL) before its 202;
# the routing task then turns stored events into messages, concurrently.
#
# 1. Intake, LOAD_RUNS (default 3) runs of each, interleaved:
#      baseline   examples/baseline.rs: axum, parses the JSON into a serde_json::Value, answers 202;
#      distinct   dingrelay, every request a distinct alert group (the Lua script varies the
#                 top-level groupKey, which goes into the Alertmanager dedup key): each 202 is
#                 one event committed to the event log, the durable-write path;
#    then one run of
#      identical  dingrelay, the same payload every time: after the first, each request is a
#                 duplicate within dedup_window (202 "duplicate", no insert).
#    For each run: requests/s, p50/p99 latency, non-202 answers, socket errors, and the process's
#    CPU (utime + stime from /proc/PID/stat, over the wrk run) per 202 answer wrk read. For
#    dingrelay also:
#    - the outbox thread's share of that CPU, and how many of the run's events the router had
#      routed when wrk stopped (it runs beside intake, so that CPU includes their routing; after
#      the routing measurement (a) below, intake's own CPU is estimated without it);
#    - the storage facts, per 202 over the run: the outbox thread's read and write syscalls
#      (/proc/PID/task/TID/io: its reads are SQLite's pread64 calls, its writes SQLite's pwrite64
#      calls plus about 1% of wake-ups written to the runtime's eventfd, as strace showed), the
#      whole process's (with the answers written to the sockets), and the bytes written to the
#      disk (WAL and checkpoints);
#    - once the router has caught up (waited for up to LOAD_DRAIN_TIMEOUT): CPU, pread and pwrite
#      per event for intake and routing together;
#    - the checks: every 202 (dingrelay_requests_total, which also counts the answers wrk did not
#      read when it stopped) is one stored event, with no duplicate; every stored event is routed
#      (dingrelay_events_routed_total); with one robot, dingrelay_messages_queued_total equals the
#      events routed. For the identical run: one event stored, every other 202 a duplicate.
#    Then the medians of the runs, the ratios to the baseline and the targets of issue 11 next to
#    them: requests/s at least 50% of the baseline's, CPU per request at most 3x the baseline's,
#    p99 under 5 ms in every run. Idle RSS (VmRSS once ready), peak RSS (VmHWM after the load) and
#    start-up time (exec to `/-/ready` answering 200; best and median of LOAD_STARTS starts) are
#    reported too.
# 2. Routing, over a backlog of LOAD_BACKLOG events (default 100,000) written into the event log
#    while no daemon runs: a daemon is started once to create the schema and store one real
#    webhook (posted with curl, the headers wrk sends), then python3's sqlite3 replaces it with
#    LOAD_BACKLOG rows holding exactly the columns intake writes (its source, name, headers and
#    query; no dedup key; received_at now; the payload with a distinct groupKey each; not routed).
#      (a) drain     the daemon started on that backlog and nothing else: wall time (from exec)
#                    and process CPU until every event is routed (the event log is polled from
#                    here, through its index of waiting events, not through /metrics: a scrape
#                    counts the pending messages and would be charged to the daemon); routing
#                    events/s and CPU per routed event, which also includes the start-up and the
#                    dry-run robot's worker. That worker keeps within the robot's rate (19 a
#                    minute) and, with this backlog, merges due messages into digests (as many
#                    as fit in 20 KB), so it sends at most 19 requests a minute whatever the
#                    backlog, each after counting the robot's pending messages and reading up to
#                    400 due ones; its printing (stdout to /dev/null) is negligible. What it and
#                    the idle router cost is reported after the drain (CPU over 6 s, from
#                    /proc/PID/task/*/schedstat), with the cost of a /metrics scrape then. After
#                    the drain, intake's own CPU per 202 in the distinct runs is estimated: their
#                    CPU less the events routed during them at this cost per event.
#                    Target: at most 100 µs of CPU per routed event.
#      (b) intake    a copy of the same backlog, the daemon started on it, and at once the
#                    distinct wrk run while the backlog drains: requests/s, p99, and how much of
#                    the backlog was routed when wrk started and when it stopped. Target: p99
#                    under 5 ms. (The first append reads the dedup keys of the window back from
#                    the log, here through the whole backlog, so the first answers wait for it,
#                    as after a restart.)
# 3. The fsync latency of the disk holding the state directory (what bounds a durable commit).
#
# Usage: scripts/load.sh            (from anywhere)
#
# Environment:
#   LOAD_SECONDS        seconds per wrk run (default 20, at most 120)
#   LOAD_RUNS           runs of baseline and of distinct (default 3, at most 9)
#   LOAD_IDENTICAL      0: skip the identical run (default 1)
#   LOAD_CONNECTIONS    concurrent connections (default 16, at most 256)
#   LOAD_THREADS        wrk threads (default 2)
#   LOAD_PAYLOAD        corpus file (default alertmanager/msteams.prom_post_request_12_alerts.json;
#                       it must have a top-level "groupKey": "...")
#   LOAD_STARTS         start-up measurements (default 5, at most 20)
#   LOAD_BACKLOG        events of the routing backlog (default 100000, at most 200000; 0 skips the
#                       routing measurements)
#   LOAD_DRAIN_TIMEOUT  seconds to wait for routing to catch up, each time (default 600, 10..1800)
#   LOAD_SKIP_BUILD     1: do not run `cargo build --release` (the binary and the example must exist)
#   CARGO_TARGET_DIR    where cargo builds (default target): the default binaries are looked for there
#   DINGRELAY_BIN       default $CARGO_TARGET_DIR/release/dingrelay (another build, to compare: an
#                       absolute path)
#   BASELINE_BIN        default $CARGO_TARGET_DIR/release/examples/baseline
#
# Needs wrk (installed with apt-get when missing and run as root), python3 (with sqlite3) and curl,
# and free space in TMPDIR (checked: 1.5 GB per 10 s of intake run, 25 KB per backlog event).
# Everything listens on 127.0.0.1 only; every process is killed and the temporary directory removed
# on exit. With the defaults a run takes about 6 minutes after the build, much of it waiting for
# routing to catch up after each distinct run. Exit status: 0 when the runs completed (targets are
# reported, not enforced), 2 on a setup failure.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

SECONDS_PER_RUN=${LOAD_SECONDS:-20}
RUNS=${LOAD_RUNS:-3}
IDENTICAL=${LOAD_IDENTICAL:-1}
CONNECTIONS=${LOAD_CONNECTIONS:-16}
THREADS=${LOAD_THREADS:-2}
PAYLOAD=${LOAD_PAYLOAD:-alertmanager/msteams.prom_post_request_12_alerts.json}
STARTS=${LOAD_STARTS:-5}
BACKLOG=${LOAD_BACKLOG:-100000}
DRAIN_TIMEOUT=${LOAD_DRAIN_TIMEOUT:-600}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${DINGRELAY_BIN:-$TARGET_DIR/release/dingrelay}
BASELINE=${BASELINE_BIN:-$TARGET_DIR/release/examples/baseline}
BEARER=load-bearer-token

die() { echo "load: $*" >&2; exit 2; }

# Checks that the value of variable $1 (set from environment variable $4) is an integer in [$2, $3].
check_int() {
    local min=$2 max=$3 value=${!1}
    if ! [[ $value =~ ^[0-9]+$ ]] || ((value < min || value > max)); then
        die "$4 must be $min..$max (got '$value')"
    fi
}
check_int SECONDS_PER_RUN 1 120 LOAD_SECONDS
check_int RUNS 1 9 LOAD_RUNS
check_int IDENTICAL 0 1 LOAD_IDENTICAL
check_int CONNECTIONS 1 256 LOAD_CONNECTIONS
check_int THREADS 1 "$CONNECTIONS" LOAD_THREADS
check_int STARTS 1 20 LOAD_STARTS
check_int BACKLOG 0 200000 LOAD_BACKLOG
check_int DRAIN_TIMEOUT 10 1800 LOAD_DRAIN_TIMEOUT
BODY_FILE=$ROOT/tests/fixtures/corpus/$PAYLOAD
[[ -f $BODY_FILE ]] || die "no payload at $BODY_FILE"
grep -q '^  "groupKey": "' "$BODY_FILE" || die "$PAYLOAD has no top-level \"groupKey\": \"...\""

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
python3 -c 'import sqlite3' 2>/dev/null || die "needs python3's sqlite3 module"

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

# Dies unless TMPDIR has $1 MB free.
need_space() {
    local free
    free=$(df -Pm "$TMP" | awk 'NR == 2 {print $4}')
    ((free >= $1)) || die "needs about $1 MB free in $TMP for $2 (has $free MB)"
}

# ---- helpers written to the temporary directory ---------------------------------------------------

# start.py PIDFILE LOG PORT CMD...: starts CMD (stdout to /dev/null, stderr to LOG), polls
# GET /-/ready on PORT every 0.2 ms over a raw socket, prints the milliseconds from just before
# the fork+exec to the first 200, and leaves the process running (its pid in PIDFILE, the wall
# clock just before the fork+exec, in ns since the epoch, in PIDFILE.t0).
cat >"$TMP/start.py" <<'PY'
import os, socket, subprocess, sys, time
pidfile, log, port, *cmd = sys.argv[1:]
port = int(port)
request = b"GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
with open(log, "ab") as err:
    wall0 = time.time_ns()
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
with open(pidfile, "w") as f:
    f.write(str(proc.pid))
with open(pidfile + ".t0", "w") as f:
    f.write(str(wall0))
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

# events.py: the event log, read and written from here.
#   count DB [MAX_ID]   prints "stored=N waiting=W" (waiting: not yet routed, of ids <= MAX_ID)
#   drain DB PID TIMEOUT [T0_NS]
#                       polls every 0.1 s until no event waits (the first entry of the partial
#                       index events_waiting: a look-up, where a count would cost 0.5 µs per waiting
#                       event), then prints drained=1|0, seconds (since T0_NS, else since the call),
#                       waiting, the CPU (µs) of process PID and of its outbox thread, and that
#                       thread's read and write syscalls so far, read at that moment
#   prefill DB BODY N   with no daemon running: takes the source, name, headers and query of the one
#                       event intake stored, empties the log (events, messages, attempts) and writes
#                       N events as intake would, the body with a distinct groupKey each
cat >"$TMP/events.py" <<'PY'
import json, os, sqlite3, sys, time

def connect(db):
    return sqlite3.connect(db, timeout=10, isolation_level=None)

def waiting(conn, max_id=None):
    if max_id is None:
        sql, args = "SELECT COUNT(*) FROM events WHERE routed_at IS NULL", ()
    else:
        sql, args = "SELECT COUNT(*) FROM events WHERE routed_at IS NULL AND id <= ?", (max_id,)
    return conn.execute(sql, args).fetchone()[0]

def cpu_us(stat):
    try:
        with open(stat) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return round((int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf("SC_CLK_TCK"))

def outbox_task(pid):
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == "outbox":
                    return f"/proc/{pid}/task/{tid}"
        except OSError:
            pass
    return "/nonexistent"

def syscalls(io):
    try:
        with open(io) as f:
            counts = dict(line.split(": ") for line in f.read().splitlines())
    except OSError:
        return 0, 0
    return int(counts["syscr"]), int(counts["syscw"])

command, db, *args = sys.argv[1:]
if command == "count":
    conn = connect(db)
    stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    print(f"stored={stored} waiting={waiting(conn, int(args[0]) if args else None)}")
elif command == "drain":
    pid, timeout = int(args[0]), float(args[1])
    t0 = int(args[2]) if len(args) > 2 else time.time_ns()
    start = time.monotonic()
    conn = connect(db)
    task = outbox_task(pid)
    first = "SELECT MIN(id) FROM events WHERE routed_at IS NULL"
    while True:
        done = conn.execute(first).fetchone()[0] is None
        if done or time.monotonic() - start > timeout:
            cpu, outbox = cpu_us(f"/proc/{pid}/stat"), cpu_us(f"{task}/stat")
            reads, writes = syscalls(f"{task}/io")
            seconds = (time.time_ns() - t0) / 1e9
            left = 0 if done else waiting(conn)
            break
        time.sleep(0.1)
    print(f"drained={int(left == 0)} seconds={seconds:.3f} waiting={left} cpu_us={cpu} outbox_cpu_us={outbox} "
          f"outbox_syscr={reads} outbox_syscw={writes}")
elif command == "prefill":
    body_file, n = args[0], int(args[1])
    with open(body_file, "rb") as f:
        body = f.read()
    marker = b'"groupKey": "'
    at = body.index(marker) + len(marker)
    head, tail = body[:at], body[at:]
    conn = connect(db)
    rows = conn.execute(
        "SELECT source, name, headers, query FROM events JOIN event_bodies USING (id)").fetchall()
    if len(rows) != 1:
        sys.exit(f"expected the one event intake stored, found {len(rows)}")
    source, name, headers, query = rows[0]
    headers = json.loads(headers)
    # No other connection: write without a WAL and without fsyncs, then sync the file once,
    # so that no writeback of the backlog overlaps the measurement.
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.execute("DELETE FROM messages")
    conn.execute("DELETE FROM attempts")
    conn.execute("DELETE FROM events")
    conn.execute("DELETE FROM event_bodies")
    now = time.time_ns() // 10**6
    # The two tables intake writes: the event, and what the request carried under the same id.
    conn.executemany(
        "INSERT INTO events (id, source, name, dedup_key, received_at) VALUES (?, ?, ?, ?, ?)",
        ((i + 1, source, name, None, now) for i in range(n)))
    def bodies():
        for i in range(n):
            data = head + f"backlog-{i}:".encode() + tail
            if "content-length" in headers:
                headers["content-length"] = str(len(data))
            yield (i + 1, json.dumps(headers, separators=(",", ":")), query, data)
    conn.executemany(
        "INSERT INTO event_bodies (id, headers, query, body) VALUES (?, ?, ?, ?)", bodies())
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    fd = os.open(db, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    print(f"{n} events, {os.path.getsize(db) / 2**20:.0f} MiB")
else:
    sys.exit(f"unknown command {command}")
PY

# The wrk script: LOAD_MODE=distinct varies the top-level groupKey of every request (thread id
# and a counter; it is part of the Alertmanager dedup key, so each request is a distinct event),
# LOAD_MODE=identical posts the file as it is. Counts the answers that are not 202 and prints one
# machine-readable line.
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
# CPU time (user + system) so far, in microseconds, of a process or thread (its stat file).
stat_cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1e6 / hz}' "$1"; }
cpu_us() { stat_cpu_us "/proc/$1/stat"; }
# The same from the scheduler, in ns (precise where stat counts 10 ms ticks), of PID's live threads.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }
# The task directory of PID's outbox thread (the one that owns the SQLite connection).
outbox_task() {
    local task
    for task in /proc/"$1"/task/*; do
        if [[ $(cat "$task/comm" 2>/dev/null) == outbox ]]; then
            echo "$task"
            return
        fi
    done
    die "no outbox thread in process $1"
}
# "syscr syscw write_bytes" of a /proc io file.
io_counts() { awk '$1 == "syscr:" {r = $2} $1 == "syscw:" {w = $2} $1 == "write_bytes:" {b = $2} END {print r, w, b}' "$1"; }
per_request() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (n > 0 ? (b - a) / n : 0)}'; }
per_request1() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.1f", (n > 0 ? (b - a) / n : 0)}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
# "met" or "MISSED": whether the awk expression $1 (numbers and a comparison) holds.
verdict() { if awk "BEGIN {exit !($1)}"; then echo met; else echo MISSED; fi; }

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

# The sum of a metric's series in an OpenMetrics text; $3, when given, must be in the line.
metric() { awk -v name="$1" -v has="${3:-}" 'index($0, name) == 1 && substr($0, length(name) + 1, 1) ~ /[{ ]/ && index($0, has) {s += $NF} END {print s + 0}' <<<"$2"; }
scrape() { curl -s --max-time 30 "http://127.0.0.1:$PORT/metrics"; }

# Writes the config for a dingrelay on PORT with state in DIR (the state is kept).
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

# Starts dingrelay on a fresh port with the state dir of $TMP/relay.NAME (fresh unless an earlier
# start or a prefill left one there); sets PID, PORT, DIR, DB, T0 (the wall clock just before the
# exec, ns) and STARTED (the start-up milliseconds). Not in a subshell: PID must reach stop().
start_relay() {
    local n=$1
    PORT=$(free_port)
    DIR=$TMP/relay.$n
    DB=$DIR/state/outbox.sqlite3
    config "$PORT" "$DIR"
    python3 "$TMP/start.py" "$TMP/pid" "$DIR/stderr.log" "$PORT" \
        "$BIN" serve --config "$DIR/rules.yaml" >"$TMP/start.out" || {
        PID=$(cat "$TMP/pid" 2>/dev/null || true)
        tail -n 20 "$DIR/stderr.log" >&2
        die "dingrelay did not become ready"
    }
    PID=$(cat "$TMP/pid")
    T0=$(cat "$TMP/pid.t0")
    STARTED=$(cat "$TMP/start.out")
}

echo "load: $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg); $CONNECTIONS connections, $THREADS wrk threads, ${SECONDS_PER_RUN} s per run, $RUNS runs"
echo "load: payload $PAYLOAD ($(wc -c <"$BODY_FILE") bytes); dingrelay $BIN"

# ---- start-up --------------------------------------------------------------------------------------
starts=()
for ((i = 1; i <= STARTS; i++)); do
    start_relay "start$i"
    starts+=("$STARTED")
    stop
    rm -rf "$DIR"
done
startup=$(printf '%s\n' "${starts[@]}" | sort -n | awk '{a[NR] = $1} END {printf "best %.2f ms, median %.2f ms, worst %.2f ms", a[1], a[int((NR + 1) / 2)], a[NR]}')
echo "load: dingrelay start to ready ($STARTS starts, fresh state dir each): $startup"

# ---- intake ----------------------------------------------------------------------------------------

# One baseline run: sets RESULT and CPU (µs per 202).
baseline_run() {
    local label=$1 idle cpu0 cpu1 peak ok
    PORT=$(free_port)
    python3 "$TMP/start.py" "$TMP/pid" "$TMP/baseline.log" "$PORT" \
        "$BASELINE" "127.0.0.1:$PORT" >"$TMP/start.out" || die "the baseline did not become ready"
    PID=$(cat "$TMP/pid")
    sleep 1
    idle=$(kb "$PID" VmRSS)
    cpu0=$(cpu_us "$PID")
    RESULT=$(load "http://127.0.0.1:$PORT/hooks/alertmanager" distinct)
    cpu1=$(cpu_us "$PID")
    [[ -n $RESULT ]] || die "the baseline run gave no result"
    peak=$(kb "$PID" VmHWM)
    stop
    ok=$(($(field requests "$RESULT") - $(field not202 "$RESULT")))
    CPU=$(per_request "$cpu0" "$cpu1" "$ok")
    echo "load: $label  $RESULT"
    echo "load: $label  CPU $CPU µs per 202; start to ready $(cat "$TMP/start.out") ms; RSS idle $(mib "$idle") MiB, peak $(mib "$peak") MiB"
}

# One dingrelay run in MODE (distinct or identical), BASE_RPS the baseline's to compare with: sets
# RESULT, CPU (µs per 202), OK (202s read by wrk), CPU_RUN (µs over the run) and ROUTED (events
# routed by the end of the run); prints the run, its storage facts and its checks.
relay_run() {
    local label=$1 mode=$2 base_rps=$3 idle task cpu0 cpu1 tcpu0 tcpu1 io0 io1 tio0 tio1 peak ok
    local at_stop drain metrics final log answered stored waiting routed queued duplicate failures
    local checks r0 w0 b0 r1 w1 b1 tr0 tw0 tr1 tw1
    start_relay "$mode"
    sleep 1
    idle=$(kb "$PID" VmRSS)
    task=$(outbox_task "$PID")
    cpu0=$(cpu_us "$PID")
    tcpu0=$(stat_cpu_us "$task/stat")
    io0=$(io_counts "/proc/$PID/io")
    tio0=$(io_counts "$task/io")
    RESULT=$(load "http://127.0.0.1:$PORT/hooks/alertmanager" "$mode")
    cpu1=$(cpu_us "$PID")
    tcpu1=$(stat_cpu_us "$task/stat")
    io1=$(io_counts "/proc/$PID/io")
    tio1=$(io_counts "$task/io")
    [[ -n $RESULT ]] || die "the $mode run gave no result"
    peak=$(kb "$PID" VmHWM)
    at_stop=$(python3 "$TMP/events.py" count "$DB")
    drain=$(python3 "$TMP/events.py" drain "$DB" "$PID" "$DRAIN_TIMEOUT")
    metrics=$(scrape)
    stop
    final=$(python3 "$TMP/events.py" count "$DB")
    log=$(wc -l <"$DIR/stderr.log")
    rm -rf "$DIR"

    ok=$(($(field requests "$RESULT") - $(field not202 "$RESULT")))
    CPU=$(per_request "$cpu0" "$cpu1" "$ok")
    stored=$(field stored "$final")
    waiting=$(field waiting "$at_stop")
    OK=$ok CPU_RUN=$((cpu1 - cpu0)) ROUTED=$((stored - waiting))
    answered=$(metric dingrelay_requests_total "$metrics" 'status="202"')
    routed=$(metric dingrelay_events_routed_total "$metrics")
    queued=$(metric dingrelay_messages_queued_total "$metrics")
    duplicate=$(metric dingrelay_events_duplicate_total "$metrics")
    failures=$(metric dingrelay_rule_failures_total "$metrics")
    read -r r0 w0 b0 <<<"$io0"
    read -r r1 w1 b1 <<<"$io1"
    read -r tr0 tw0 _ <<<"$tio0"
    read -r tr1 tw1 _ <<<"$tio1"

    echo "load: $label  $RESULT"
    echo "load: $label  $(awk -v a="$(field rps "$RESULT")" -v b="$base_rps" 'BEGIN {printf "%.1f%%", 100 * a / b}') of the baseline; CPU $CPU µs per 202 (outbox thread $(per_request "$tcpu0" "$tcpu1" "$ok")), with the routing done meanwhile: $((stored - waiting)) of the $stored events routed when wrk stopped"
    echo "load: $label  storage per 202 during the run: outbox thread $(per_request1 "$tr0" "$tr1" "$ok") pread + $(per_request1 "$tw0" "$tw1" "$ok") pwrite (its read and write syscalls, with the routing done meanwhile); whole process $(per_request1 "$r0" "$r1" "$ok") read + $(per_request1 "$w0" "$w1" "$ok") write syscalls (sockets too); $(awk -v a="$b0" -v b="$b1" -v n="$ok" 'BEGIN {printf "%.1f", (n > 0 ? (b - a) / n / 1024 : 0)}') KiB written to the disk"
    if [[ $mode == distinct ]]; then
        echo "load: $label  intake and routing, to the last event routed ($(field seconds "$drain") s after wrk stopped): CPU $(per_request "$cpu0" "$(field cpu_us "$drain")" "$stored") µs per event; outbox thread $(per_request1 "$tr0" "$(field outbox_syscr "$drain")" "$stored") pread + $(per_request1 "$tw0" "$(field outbox_syscw "$drain")" "$stored") pwrite per event"
    fi
    echo "load: $label  start to ready ${STARTED} ms; RSS idle $(mib "$idle") MiB, peak $(mib "$peak") MiB; stderr log $log lines"
    if [[ $mode == distinct ]]; then
        # A request in flight when wrk stopped may be answered (or only stored) unread.
        checks="202s: wrk read $ok, dingrelay answered $answered; stored events $stored"
        if ((duplicate == 0 && ok <= answered && answered <= stored && stored <= ok + CONNECTIONS)); then
            checks+=" (ok: one per 202, $((stored - ok)) in flight when wrk stopped)"
        else
            checks+=" (MISMATCH; duplicates $duplicate)"
        fi
    else
        checks="202s: wrk read $ok, dingrelay answered $answered; stored events $stored, duplicates $duplicate"
        if ((stored == 1 && duplicate == answered - 1)); then checks+=" (ok)"; else checks+=" (MISMATCH)"; fi
    fi
    checks+="; routed $routed"
    if [[ $(field drained "$drain") == 1 && $routed == "$stored" ]]; then
        checks+=" (= stored: ok)"
    elif [[ $(field drained "$drain") == 1 ]]; then
        checks+=" (MISMATCH)"
    else
        checks+=" (MISMATCH: $(field waiting "$drain") still waiting after ${DRAIN_TIMEOUT} s)"
    fi
    checks+="; messages queued $queued"
    if ((queued == routed)); then checks+=" (= routed: ok)"; else checks+=" (MISMATCH)"; fi
    ((failures == 0)) || checks+="; rule failures $failures (fallback messages)"
    echo "load: $label  $checks"
}

# Each dingrelay run's state (12 KB per event with its message, up to ~150 MB a second of run) is
# removed after it.
need_space $((SECONDS_PER_RUN * 150 + 1024)) "an intake run"
base_rps=() base_p50=() base_p99=() base_cpu=()
relay_rps=() relay_p50=() relay_p99=() relay_cpu=() relay_ok=() relay_cpu_run=() relay_routed=()
for ((run = 1; run <= RUNS; run++)); do
    baseline_run "baseline $run/$RUNS "
    base_rps+=("$(field rps "$RESULT")") base_p50+=("$(field p50_ms "$RESULT")")
    base_p99+=("$(field p99_ms "$RESULT")") base_cpu+=("$CPU")
    relay_run "distinct $run/$RUNS " distinct "$(field rps "$RESULT")"
    relay_rps+=("$(field rps "$RESULT")") relay_p50+=("$(field p50_ms "$RESULT")")
    relay_p99+=("$(field p99_ms "$RESULT")") relay_cpu+=("$CPU")
    relay_ok+=("$OK") relay_cpu_run+=("$CPU_RUN") relay_routed+=("$ROUTED")
done
if ((IDENTICAL)); then
    relay_run "identical    " identical "$(median "${base_rps[@]}")"
fi

rps_b=$(median "${base_rps[@]}") rps_r=$(median "${relay_rps[@]}")
cpu_b=$(median "${base_cpu[@]}") cpu_r=$(median "${relay_cpu[@]}")
share=$(awk -v a="$rps_r" -v b="$rps_b" 'BEGIN {printf "%.1f", 100 * a / b}')
times=$(awk -v a="$cpu_r" -v b="$cpu_b" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}')
worst=$(printf '%s\n' "${relay_p99[@]}" | sort -g | tail -n 1)
echo "load: intake, median of $RUNS runs (targets of issue 11):"
echo "load:   req/s      baseline $rps_b, dingrelay $rps_r: $share% of the baseline    (target >= 50%: $(verdict "$share >= 50"))"
echo "load:   CPU/202    baseline $cpu_b µs, dingrelay $cpu_r µs: ${times}x the baseline    (target <= 3x: $(verdict "$times <= 3"))"
echo "load:   p50        baseline $(median "${base_p50[@]}") ms, dingrelay $(median "${relay_p50[@]}") ms"
echo "load:   p99        baseline $(median "${base_p99[@]}") ms; dingrelay ${relay_p99[*]} ms, median $(median "${relay_p99[@]}") ms    (target < 5 ms in every run: $(verdict "$worst < 5"))"

# ---- routing ---------------------------------------------------------------------------------------
if ((BACKLOG > 0)); then
    need_space $((BACKLOG * 25 / 1024 + 1024)) "two copies of a backlog of $BACKLOG events"
    # The schema, and one event as intake stores it (curl sends the headers wrk sends).
    start_relay backlog
    status=$(curl -s -o "$TMP/answer.json" -w '%{http_code}' --max-time 10 -H 'User-Agent:' -H 'Accept:' \
        -H 'Content-Type: application/json' -H "Authorization: Bearer $BEARER" \
        --data-binary "@$BODY_FILE" "http://127.0.0.1:$PORT/hooks/alertmanager")
    stop
    [[ $status == 202 ]] || die "the webhook for the backlog's template was answered $status: $(cat "$TMP/answer.json")"
    SEED=$DB
    began=$(date +%s%N)
    filled=$(python3 "$TMP/events.py" prefill "$SEED" "$BODY_FILE" "$BACKLOG") || die "could not write the backlog"
    mkdir -p "$TMP/relay.during-drain/state"
    cp "$SEED" "$TMP/relay.during-drain/state/"
    sync "$TMP/relay.during-drain/state/outbox.sqlite3"
    echo "load: backlog: $filled, written with no daemon running, and a copy for (b), in $(awk -v a="$began" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}') s"

    # (a) Draining the backlog, nothing else.
    start_relay backlog
    drain=$(python3 "$TMP/events.py" drain "$DB" "$PID" "$DRAIN_TIMEOUT" "$T0")
    metrics=$(scrape)
    routed=$(metric dingrelay_events_routed_total "$metrics")
    queued=$(metric dingrelay_messages_queued_total "$metrics")
    cpu=$(field cpu_us "$drain")
    seconds=$(field seconds "$drain")
    if [[ $(field drained "$drain") == 1 ]]; then
        per_event=$(per_request 0 "$cpu" "$BACKLOG")
        echo "load: routing  $BACKLOG events routed in $seconds s from exec (ready in $STARTED ms): $(awk -v n="$BACKLOG" -v s="$seconds" 'BEGIN {printf "%.0f", n / s}') events/s; CPU $per_event µs per routed event (outbox thread $(per_request 0 "$(field outbox_cpu_us "$drain")" "$BACKLOG"); start-up and the dry-run worker included)    (target <= 100 µs: $(verdict "$per_event <= 100"))"
        # The distinct runs' CPU without the routing done during them, at this cost per event.
        own=()
        for ((i = 0; i < RUNS; i++)); do
            own+=("$(awk -v c="${relay_cpu_run[i]}" -v r="${relay_routed[i]}" -v e="$per_event" -v n="${relay_ok[i]}" 'BEGIN {printf "%.0f", (c - r * e) / n}')")
        done
        echo "load: routing  so intake's own CPU per 202 in the distinct runs, less the routing done during them at this cost (an estimate): ${own[*]} µs, median $(median "${own[@]}") µs: $(awk -v a="$(median "${own[@]}")" -v b="$cpu_b" 'BEGIN {printf "%.1f", a / b}')x the baseline"
    else
        echo "load: routing  NOT DRAINED: $(field waiting "$drain") of $BACKLOG events still waiting after $DRAIN_TIMEOUT s; CPU so far $cpu µs"
    fi
    checks="/metrics: routed $routed"
    if ((routed == BACKLOG)); then checks+=" (= backlog: ok)"; else checks+=" (MISMATCH)"; fi
    checks+=", messages queued $queued"
    if ((queued == routed)); then checks+=" (= routed: ok)"; else checks+=" (MISMATCH)"; fi
    checks+=", rule failures $(metric dingrelay_rule_failures_total "$metrics"), routing lag of the last event $(metric dingrelay_routing_lag_seconds "$metrics") s"
    echo "load: routing  $checks"
    # After the drain: the worker (a digest of the pending messages every ~3 s, the robot's rate),
    # the idle router; then what one /metrics scrape costs with every message pending.
    cpu0=$(cpu_ns "$PID")
    sleep 6
    cpu1=$(cpu_ns "$PID")
    for _ in 1 2 3 4 5; do scrape >/dev/null; done
    cpu2=$(cpu_ns "$PID")
    metrics=$(scrape)
    echo "load: routing  after the drain: $(per_request1 "$cpu0" "$cpu1" 6000000) ms CPU per second over 6 s (the dry-run worker, the idle router); the worker sent $(metric dingrelay_requests_sent_total "$metrics") requests (digests $(metric dingrelay_digests_total "$metrics"), $(metric dingrelay_messages_sent_total "$metrics") messages) since the start; a /metrics scrape with $(metric dingrelay_outbox_pending "$metrics") pending messages costs $(per_request1 "$cpu1" "$cpu2" 5000000) ms CPU"
    echo "load: routing  state after the drain: $(du -sm "$DIR/state" | cut -f1) MiB ($(du -sk "$DIR/state" | awk -v n="$BACKLOG" '{printf "%.1f", $1 / n}') KiB per event, with its message)"
    stop
    rm -rf "$DIR"

    # (b) Intake while the backlog drains.
    start_relay during-drain
    before=$(python3 "$TMP/events.py" count "$DB" "$BACKLOG")
    result=$(load "http://127.0.0.1:$PORT/hooks/alertmanager" distinct)
    after=$(python3 "$TMP/events.py" count "$DB" "$BACKLOG")
    stop
    rm -rf "$DIR"
    p99=$(field p99_ms "$result")
    echo "load: draining $result"
    echo "load: draining backlog routed when wrk started: $((BACKLOG - $(field waiting "$before"))) of $BACKLOG, when it stopped: $((BACKLOG - $(field waiting "$after"))); p99 $p99 ms    (target < 5 ms: $(verdict "$p99 < 5"))"
    if (($(field waiting "$after") == 0)); then
        echo "load: draining (the backlog drained before wrk stopped: only part of the run had routing beside it; raise LOAD_BACKLOG)"
    fi
fi

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
