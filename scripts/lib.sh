# shellcheck shell=bash
# Shared by scripts/storm.sh, crash.sh, outage.sh, badinput.sh and apps.sh (sourced, not run).
#
# A caller sets NAME (the prefix of its output lines) and `set -euo pipefail`, then sources this
# file, which: goes to the repository root, checks the common tools, creates $TMP, and installs the
# traps that stop every process started through it (the DingTalk stand-in, dingrelay, helpers
# registered with `track`) and remove $TMP on exit, whatever happens.
#
# Common environment (the names storm.sh uses):
#   MOCK_DINGTALK     the DingTalk stand-in to run (default: the mock-dingtalk binary of
#                     crates/mock-dingtalk, target/release/mock-dingtalk; the Python tool it twins,
#                     shared/tools/mock-dingtalk, takes the same options and answers the same)
#   STORM_SKIP_BUILD  1: do not run `cargo build --release` (of dingrelay and mock-dingtalk)
#   DINGRELAY_BIN     the binary to run (default target/release/dingrelay)
#   CARGO_TARGET_DIR  where cargo builds (default target): the default binaries are looked for there
#   FAULTS_KEEP_TMP   1: keep the temporary directory (logs, outbox, stand-in stats) for a look
#
# Exit status convention: 0 PASS, 1 FAIL, 2 setup error (`die`). Everything is on 127.0.0.1.

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit
# shellcheck disable=SC2034 # for the callers
ROOT=$(pwd)

TARGET_DIR=${CARGO_TARGET_DIR:-target}
MOCK=${MOCK_DINGTALK:-$TARGET_DIR/release/mock-dingtalk}
BIN=${DINGRELAY_BIN:-$TARGET_DIR/release/dingrelay}
RATE=20                                  # what the stand-in allows per robot per 60 s
# shellcheck disable=SC2153 # NAME is the caller's
TOKEN=$NAME-robot-token
SECRET=SEC${NAME}0123456789abcdef0123456789abcdef0123456789abcdef01234567
KEYWORD=告警
BEARER=$NAME-bearer-token

say() { echo "$NAME: $*"; }
# A setup error: one verdict line, exit 2.
die() {
    echo "$NAME: SETUP ERROR: $*"
    exit 2
}

# Checks that the value of variable $1 is an integer in [$2, $3].
check_int() {
    local name=$1 min=$2 max=$3 value=${!1}
    if ! [[ $value =~ ^[0-9]+$ ]] || ((value < min || value > max)); then
        die "$name must be $min..$max (got '$value')"
    fi
}

for tool in python3 curl timeout; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dingrelay-$NAME.XXXXXX")
MOCK_PID=
RELAY_PID=
TRACKED=()   # other processes to stop on exit

# Registers a background process to stop on exit.
track() { TRACKED+=("$1"); }

# Stops one process we started: TERM, up to 5 s, then KILL.
stop() {
    local pid=$1
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${TRACKED[@]}"; do stop "$pid"; done
    stop "$RELAY_PID"
    stop "$MOCK_PID"
    if [[ ${FAULTS_KEEP_TMP:-0} == 1 ]]; then
        echo "$NAME: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Sleeps $1 seconds in a way a signal interrupts at once.
nap() {
    sleep "$1" &
    local pid=$!
    wait "$pid" 2>/dev/null || { kill "$pid" 2>/dev/null || true; }
}

# Waits up to $1 seconds for the command in the other arguments to succeed.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---- build ---------------------------------------------------------------------------------------
build_release() {
    if [[ ${STORM_SKIP_BUILD:-0} != 1 ]]; then
        say "cargo build --release (dingrelay and the DingTalk stand-in)"
        timeout 1800 cargo build --release --quiet -p dingrelay -p mock-dingtalk ||
            die "the release build failed"
    fi
    [[ -x $BIN ]] || die "no binary at $BIN"
    [[ -x $MOCK ]] || die "no DingTalk stand-in at $MOCK (set MOCK_DINGTALK)"
}

# ---- the DingTalk stand-in -----------------------------------------------------------------------
# MOCK_ARGS: more of the stand-in's options (apps, users, groups, ...), after the robot's.
MOCK_ARGS=()
start_mock() {
    "$MOCK" --host 127.0.0.1 --port-file "$TMP/mock.port" \
        --robot "$TOKEN:$SECRET:$KEYWORD" --rate "$RATE" "${MOCK_ARGS[@]}" >"$TMP/mock.log" 2>&1 &
    MOCK_PID=$!
    wait_for 10 test -s "$TMP/mock.port" || { cat "$TMP/mock.log" >&2; die "the stand-in did not start"; }
    MOCK_PORT=$(cat "$TMP/mock.port")
    MOCK_URL=http://127.0.0.1:$MOCK_PORT
    say "DingTalk stand-in on $MOCK_URL (pid $MOCK_PID)"
}

# Sets the stand-in's fault: none, http500, html, hang, reset, busy, ipthrottle.
fault() {
    curl -sf -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' \
        --data "{\"mode\": \"$1\"}" "$MOCK_URL/_fault" || die "could not set the stand-in's fault to $1"
}

# The stand-in's request count (0 when it does not answer).
mock_requests() {
    curl -s --max-time 5 "$MOCK_URL/_stats" 2>/dev/null |
        python3 -c 'import json, sys
try: print(json.load(sys.stdin)["requests"])
except Exception: print(0)'
}

# ---- dingrelay -----------------------------------------------------------------------------------
# Writes $TMP/rules.yaml: one robot `$NAME` on the stand-in, one alertmanager source with a bearer
# token, one rule. Extra top-level YAML lines come from $1.
write_config() {
    local extra=${1:-}
    relay_address
    cat >"$TMP/rules.yaml" <<YAML
# Written by scripts/$NAME.sh.
listen: 127.0.0.1:$RELAY_PORT
state_dir: $TMP/state
timezone: UTC
$extra

robots:
  $NAME:
    webhook: $MOCK_URL/robot/send?access_token=$TOKEN
    secret: $SECRET
    keywords: [$KEYWORD]
    allow_host: 127.0.0.1:$MOCK_PORT

sources:
  alertmanager:
    kind: alertmanager
    auth: { bearer: $BEARER }

rules:
  - name: $NAME
    source: alertmanager
    to: $NAME
    markdown:
      title: "$KEYWORD {{ alerts[0].labels.relay_id }}: {{ alerts | length }} alert(s)"
      text: |
        ### $KEYWORD {{ alerts[0].labels.alertname }}
        {% for alert in alerts %}
        - {{ alert.labels.relay_id }} on {{ alert.labels.instance }}
        {% endfor %}
YAML
    check_config
}

# Posts alerts $1..$2 (inclusive), 16 at a time; appends the answers' statuses to intake.codes.
post_range() {
    (($1 <= $2)) || return 0
    local t0=$SECONDS
    seq "$1" "$2" | timeout 120 xargs -P 16 -I{} \
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
        -H "Authorization: Bearer $BEARER" -H 'Content-Type: application/json' \
        --data-binary "@$TMP/alerts/{}.json" "$HOOK_URL" >>"$TMP/intake.codes" || true
    say "posted alerts $1..$2 in $((SECONDS - t0)) s"
}

# Picks dingrelay's port (RELAY_PORT, RELAY_URL, HOOK_URL) and makes $TMP/state and $TMP/alerts,
# for a $TMP/rules.yaml written by the caller (write_config, or a script's own).
relay_address() {
    RELAY_PORT=$(free_port)
    RELAY_URL=http://127.0.0.1:$RELAY_PORT
    HOOK_URL=$RELAY_URL/hooks/alertmanager
    mkdir -p "$TMP/state" "$TMP/alerts"
}

# Runs `dingrelay check` on $TMP/rules.yaml (output in $TMP/check.log); a refusal is a setup error.
check_config() {
    timeout 60 "$BIN" check "$TMP/rules.yaml" >"$TMP/check.log" 2>&1 || {
        cat "$TMP/check.log" >&2
        die "dingrelay check refused the config"
    }
}

# Starts `dingrelay serve` (JSON logs appended to $TMP/relay.log) and waits for /-/ready.
RELAY_WRAP=()
start_relay() {
    echo "---- start $(date -u +%FT%TZ)" >>"$TMP/relay.log"
    # RELAY_WRAP: a command (and its arguments) that runs the binary, e.g. in a namespace; it
    # must exec it, so that $! is dingrelay's pid.
    "${RELAY_WRAP[@]}" "$BIN" --log-format json serve --config "$TMP/rules.yaml" >>"$TMP/relay.log" 2>&1 &
    RELAY_PID=$!
    local deadline=$((SECONDS + 20))
    until curl -sf -o /dev/null --max-time 1 "$RELAY_URL/-/ready" 2>/dev/null; do
        if ! alive "$RELAY_PID" || ((SECONDS >= deadline)); then
            echo "--- dingrelay log (last 40 lines)" >&2
            tail -n 40 "$TMP/relay.log" >&2
            die "dingrelay serve did not become ready on $RELAY_URL"
        fi
        sleep 0.05
    done
    say "dingrelay on $RELAY_URL (pid $RELAY_PID)"
}

# Resident set size of process $1 in KiB (0 when gone).
rss_kib() { awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# dingrelay_outbox_pending for our robot, from /metrics ("?" when it does not answer).
relay_pending() {
    curl -s --max-time 5 "$RELAY_URL/metrics" 2>/dev/null |
        awk -v r="robot=\"$NAME\"" '/^dingrelay_outbox_pending\{/ && index($0, r) { print $2; found = 1 } END { if (!found) print "?" }'
}

# ---- alerts --------------------------------------------------------------------------------------
# Writes the Alertmanager payload for alert number $1 (id "$NAME-%04d") to $TMP/alerts/$1.json.
# $2 (optional): more labels, as JSON members (`"owner":"lin"`), in the alert's and the common labels.
make_alert() {
    local i=$1 id fingerprint more=${2:+,$2}
    id=$(printf '%s-%04d' "$NAME" "$i")
    fingerprint=$(printf '%016x' $((0x5707a000 + i)))
    cat >"$TMP/alerts/$i.json" <<JSON
{"receiver":"dingtalk","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"${NAME^}Alert","relay_id":"$id","instance":"node-$i:9100","severity":"warning"$more},"annotations":{"summary":"$NAME alert $id"},"startsAt":"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://127.0.0.1/graph","fingerprint":"$fingerprint"}],"groupLabels":{"relay_id":"$id"},"commonLabels":{"alertname":"${NAME^}Alert","relay_id":"$id"$more},"commonAnnotations":{},"externalURL":"http://127.0.0.1:9093","version":"4","groupKey":"{}:{relay_id=\"$id\"}","truncatedAlerts":0}
JSON
}

# Posts alert $1 (made by make_alert); prints the HTTP status (000 when there was no answer).
post_alert() {
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
        -H "Authorization: Bearer $BEARER" -H 'Content-Type: application/json' \
        --data-binary "@$TMP/alerts/$1.json" "$HOOK_URL" || true
}

# Reads the stand-in's messages and prints "GOT DUP_ALERTS DUP_UUIDS MESSAGES" for the ids
# "$NAME-%04d" listed one per line in the file $1: how many appear in some delivered message,
# how many extra times alerts appear (an alert in two messages counts 1), how many messages
# repeat an earlier message's msgUuid, and how many messages there are.
delivery_report() {
    curl -s --max-time 5 "$MOCK_URL/_messages" >"$TMP/messages.json" 2>/dev/null || echo '{}' >"$TMP/messages.json"
    python3 - "$TMP/messages.json" "$1" "$NAME" <<'PY'
import collections, json, re, sys
try:
    messages = json.load(open(sys.argv[1]))["messages"]
except (OSError, ValueError, KeyError):
    messages = []
wanted = {line.strip() for line in open(sys.argv[2]) if line.strip()}
pattern = re.compile(re.escape(sys.argv[3]) + r"-\d{4}")
seen = collections.Counter()
uuids = collections.Counter()
for m in messages:
    body = m.get("body") or {}
    if body.get("msgUuid"):
        uuids[body["msgUuid"]] += 1
    # An alert counts once per message, wherever it appears in it (title, text).
    for alert in set(pattern.findall(json.dumps(body, ensure_ascii=False))):
        seen[alert] += 1
got = sum(1 for a in wanted if seen[a] > 0)
dup_alerts = sum(n - 1 for a, n in seen.items() if a in wanted and n > 1)
dup_uuids = sum(n - 1 for n in uuids.values() if n > 1)
print(got, dup_alerts, dup_uuids, len(messages))
PY
}

# Saves the stand-in's /_stats to $TMP/stats.json and prints
# "MAX_IN_WINDOW THROTTLED REQUESTS ACCEPTED ERRCODES" (ERRCODES like 0×12,-1×3 or none).
stats_report() {
    curl -s --max-time 5 "$MOCK_URL/_stats" >"$TMP/stats.json" 2>/dev/null || echo '{}' >"$TMP/stats.json"
    python3 - "$TMP/stats.json" <<'PY'
import json, sys
try:
    stats = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    stats = {}
codes = stats.get("by_errcode") or {}
mw = max((stats.get("max_in_window") or {}).values(), default=0)
throttled = sum(n for c, n in codes.items() if c in ("130101", "410100"))
text = ",".join(f"{c}×{n}" for c, n in sorted(codes.items())) or "none"
print(mw, throttled, stats.get("requests", 0), stats.get("accepted", 0), text)
PY
}

# Counts the relay's log lines at each level: "ERROR=n WARN=n INFO=n".
log_levels() {
    python3 - "$TMP/relay.log" <<'PY'
import collections, json, sys
levels = collections.Counter()
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        levels[json.loads(line).get("level", "?")] += 1
    except ValueError:
        pass
print(" ".join(f"{k}={levels[k]}" for k in ("ERROR", "WARN", "INFO")))
PY
}
