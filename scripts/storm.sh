#!/usr/bin/env bash
# A bounded alert storm on loopback: 200 distinct Alertmanager webhooks posted as fast as curl can,
# through the release binary, to the Python DingTalk stand-in. Checks that every alert reaches the
# group (in some message) while DingTalk never sees more than 20 messages a minute.
#
# Usage: scripts/storm.sh            (from anywhere; works in the repository root)
#
# Environment:
#   MOCK_DINGTALK     the Python stand-in (default ../shared/tools/mock-dingtalk, from the repo root)
#   STORM_ALERTS      how many alerts (default 200, at most 1000)
#   STORM_LIMIT       seconds to wait for delivery (default 240, at most 900)
#   STORM_SKIP_BUILD  1: do not run `cargo build --release`
#   DINGRELAY_BIN     the binary to run (default target/release/dingrelay)
#
# Everything listens on 127.0.0.1 only. Both processes are killed and the temporary directory
# removed on exit, whatever happens. Exit status: 0 when every alert was delivered, DingTalk saw at
# most 20 messages in any window and never throttled; 1 otherwise; 2 when the setup failed.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

MOCK=${MOCK_DINGTALK:-../shared/tools/mock-dingtalk}
ALERTS=${STORM_ALERTS:-200}
LIMIT=${STORM_LIMIT:-240}
BIN=${DINGRELAY_BIN:-target/release/dingrelay}
RATE=20                                  # what the stand-in allows per robot per 60 s
TOKEN=storm-robot-token
SECRET=SECstorm0123456789abcdef0123456789abcdef0123456789abcdef01234567
KEYWORD=告警
BEARER=storm-bearer-token

die() { echo "storm: $*" >&2; exit 2; }

[[ $ALERTS =~ ^[0-9]+$ ]] && ((ALERTS >= 1 && ALERTS <= 1000)) || die "STORM_ALERTS must be 1..1000"
[[ $LIMIT =~ ^[0-9]+$ ]] && ((LIMIT >= 1 && LIMIT <= 900)) || die "STORM_LIMIT must be 1..900 seconds"
for tool in python3 curl timeout xargs; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
[[ -f $MOCK ]] || die "no DingTalk stand-in at $MOCK (set MOCK_DINGTALK)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dingrelay-storm.XXXXXX")
MOCK_PID=
RELAY_PID=

# Stops one process we started: TERM, up to 5 s, then KILL.
stop() {
    local pid=$1
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
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
    stop "$RELAY_PID"
    stop "$MOCK_PID"
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

alive() { kill -0 "$1" 2>/dev/null; }

# ---- build ---------------------------------------------------------------------------------------
if [[ ${STORM_SKIP_BUILD:-0} != 1 ]]; then
    echo "storm: cargo build --release"
    timeout 1800 cargo build --release --quiet || die "the release build failed"
fi
[[ -x $BIN ]] || die "no binary at $BIN"

# ---- the DingTalk stand-in -----------------------------------------------------------------------
python3 "$MOCK" --host 127.0.0.1 --port-file "$TMP/mock.port" \
    --robot "$TOKEN:$SECRET:$KEYWORD" --rate "$RATE" >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
wait_for 10 test -s "$TMP/mock.port" || { cat "$TMP/mock.log" >&2; die "the stand-in did not start"; }
MOCK_PORT=$(cat "$TMP/mock.port")
MOCK_URL=http://127.0.0.1:$MOCK_PORT
echo "storm: DingTalk stand-in on $MOCK_URL (pid $MOCK_PID)"

# ---- dingrelay -----------------------------------------------------------------------------------
RELAY_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
RELAY_URL=http://127.0.0.1:$RELAY_PORT
mkdir -p "$TMP/state" "$TMP/alerts"
cat >"$TMP/rules.yaml" <<YAML
# Written by scripts/storm.sh.
listen: 127.0.0.1:$RELAY_PORT
state_dir: $TMP/state
timezone: UTC

robots:
  storm:
    webhook: $MOCK_URL/robot/send?access_token=$TOKEN
    secret: $SECRET
    keywords: [$KEYWORD]
    allow_host: 127.0.0.1:$MOCK_PORT

sources:
  alertmanager:
    kind: alertmanager
    auth: { bearer: $BEARER }

rules:
  - name: storm
    source: alertmanager
    to: storm
    markdown:
      title: "$KEYWORD {{ alerts[0].labels.alertname }}: {{ alerts | length }} alert(s)"
      text: |
        ### $KEYWORD {{ alerts[0].labels.alertname }}
        {% for alert in alerts %}
        - {{ alert.labels.storm_id }} on {{ alert.labels.instance }}
        {% endfor %}
YAML

timeout 60 "$BIN" check "$TMP/rules.yaml" >"$TMP/check.log" 2>&1 || {
    cat "$TMP/check.log" >&2
    die "dingrelay check refused the storm config"
}

"$BIN" serve --config "$TMP/rules.yaml" >"$TMP/relay.log" 2>&1 &
RELAY_PID=$!
# Up when it answers anything over HTTP; given up on when it exits or after 20 s.
relay_up() { curl -s -o /dev/null --max-time 1 "$RELAY_URL/" 2>/dev/null; }
relay_deadline=$((SECONDS + 20))
until relay_up; do
    if ! alive "$RELAY_PID" || ((SECONDS >= relay_deadline)); then
        echo "--- dingrelay log (last 40 lines)" >&2
        tail -n 40 "$TMP/relay.log" >&2
        die "dingrelay serve did not start listening on $RELAY_URL"
    fi
    sleep 0.2
done
echo "storm: dingrelay on $RELAY_URL (pid $RELAY_PID)"

# ---- the storm -----------------------------------------------------------------------------------
started=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
for ((i = 0; i < ALERTS; i++)); do
    id=$(printf 'storm-%04d' "$i")
    fingerprint=$(printf '%016x' $((0x5707a000 + i)))
    cat >"$TMP/alerts/$i.json" <<JSON
{"receiver":"dingtalk","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"StormAlert","storm_id":"$id","instance":"node-$i:9100","severity":"warning"},"annotations":{"summary":"storm alert $id"},"startsAt":"$started","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://127.0.0.1/graph","fingerprint":"$fingerprint"}],"groupLabels":{"storm_id":"$id"},"commonLabels":{"alertname":"StormAlert","storm_id":"$id"},"commonAnnotations":{},"externalURL":"http://127.0.0.1:9093","version":"4","groupKey":"{}:{storm_id=\"$id\"}","truncatedAlerts":0}
JSON
done

echo "storm: posting $ALERTS alerts to $RELAY_URL/hooks/alertmanager"
storm_start=$SECONDS
seq 0 $((ALERTS - 1)) | timeout 120 xargs -P 32 -I{} \
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
    -H "Authorization: Bearer $BEARER" -H 'Content-Type: application/json' \
    --data-binary "@$TMP/alerts/{}.json" "$RELAY_URL/hooks/alertmanager" \
    >"$TMP/intake.codes" || true
intake=$(sort "$TMP/intake.codes" | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')
accepted=$(grep -c '^2' "$TMP/intake.codes" || true)
echo "storm: intake answered ${intake:-nothing} in $((SECONDS - storm_start)) s"

# ---- wait for delivery ---------------------------------------------------------------------------
# Prints how many of the alerts appear in some delivered message.
delivered() {
    curl -s --max-time 5 "$MOCK_URL/_messages" >"$TMP/messages.json" 2>/dev/null || { echo 0; return; }
    python3 - "$TMP/messages.json" "$ALERTS" <<'PY'
import json, sys
try:
    messages = json.load(open(sys.argv[1]))["messages"]
except (OSError, ValueError, KeyError):
    print(0)
    sys.exit()
text = "\n".join(json.dumps(m["body"], ensure_ascii=False) for m in messages)
print(sum(1 for i in range(int(sys.argv[2])) if "storm-%04d" % i in text))
PY
}

deadline=$((storm_start + LIMIT))
got=0
while :; do
    got=$(delivered)
    ((got >= ALERTS)) && break
    if ! alive "$RELAY_PID"; then
        echo "storm: dingrelay exited" >&2
        break
    fi
    if ((SECONDS >= deadline)); then
        echo "storm: gave up after ${LIMIT} s" >&2
        break
    fi
    echo "storm: $got/$ALERTS alerts delivered after $((SECONDS - storm_start)) s"
    sleep 5 &
    wait $! || true # so a signal is handled at once, not after the sleep
done
elapsed=$((SECONDS - storm_start))

# ---- verdict -------------------------------------------------------------------------------------
curl -s --max-time 5 "$MOCK_URL/_stats" >"$TMP/stats.json" || echo '{}' >"$TMP/stats.json"
echo "storm: /_stats"
python3 -m json.tool --no-ensure-ascii "$TMP/stats.json" 2>/dev/null || cat "$TMP/stats.json"
if ! alive "$RELAY_PID" || ((got < ALERTS)); then
    echo "--- dingrelay log (last 40 lines)"
    tail -n 40 "$TMP/relay.log"
fi

python3 - "$TMP/stats.json" "$got" "$ALERTS" "$RATE" "$elapsed" "$accepted" <<'PY'
import json, sys
path, got, alerts, rate, elapsed, accepted = sys.argv[1], *map(int, sys.argv[2:])
try:
    stats = json.load(open(path))
except (OSError, ValueError):
    stats = {}
max_in_window = max((stats.get("max_in_window") or {}).values(), default=0)
codes = stats.get("by_errcode") or {}
throttled = sum(n for code, n in codes.items() if code in ("130101", "410100"))
refused = {code: n for code, n in codes.items() if code != "0"}
ok = got == alerts and max_in_window <= rate and throttled == 0
print(
    f"storm: {'PASS' if ok else 'FAIL'}: {got}/{alerts} alerts delivered in "
    f"{stats.get('accepted', 0)} messages within {elapsed} s ({accepted} webhooks accepted); "
    f"max_in_window={max_in_window} (limit {rate}); throttled={throttled}; "
    f"refusals={refused or 'none'}"
)
sys.exit(0 if ok else 1)
PY
