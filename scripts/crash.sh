#!/usr/bin/env bash
# Crash with messages pending: while the DingTalk stand-in fails (HTTP 500, or hangs), N distinct
# Alertmanager alerts are accepted (all must be 202): the first ones before dingrelay's first
# failed sends, the rest ("late") after them, while the robot is backing off. dingrelay is then
# SIGKILLed, the fault cleared and dingrelay restarted on the same state directory. Checks that
# every accepted alert reaches the group (in some message), none twice, the early ones no later
# than the late ones (dingrelay sends a robot's messages in the order accepted), within the
# stand-in's rate.
#
# Usage: scripts/crash.sh            (from anywhere)
#
# Environment:
#   CRASH_FAULT       http500 (default), hang or html: how DingTalk fails before the crash
#   CRASH_ALERTS      how many alerts (default 100, at most 1000)
#   CRASH_LATE        how many of them are posted after the failed sends (default half)
#   CRASH_ATTEMPTS    failed sends the stand-in must see before the kill (default 3; 1 for hang,
#                     whose one send is then still in flight at the kill)
#   CRASH_LIMIT       seconds to wait for delivery after the restart (default 180, at most 900)
#   STORM_SKIP_BUILD, MOCK_DINGTALK, DINGRELAY_BIN: see scripts/lib.sh
#
# Loopback only; everything started is stopped and the temporary directory removed on exit.
# Exit status: 0 PASS, 1 FAIL, 2 setup error. The last line is the verdict.
#
# Note: the stand-in (like the Python tool it twins) does not drop repeated msgUuids the way
# DingTalk may, so a resend of a message that was delivered just before the crash would show here
# as a duplicate.

set -euo pipefail
NAME=crash
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FAULT=${CRASH_FAULT:-http500}
ALERTS=${CRASH_ALERTS:-100}
LIMIT=${CRASH_LIMIT:-180}
case $FAULT in
    http500 | html) ATTEMPTS=${CRASH_ATTEMPTS:-3} ;;
    hang) ATTEMPTS=${CRASH_ATTEMPTS:-1} ;;
    *) die "CRASH_FAULT must be http500, hang or html" ;;
esac
check_int ALERTS 1 1000
LATE=${CRASH_LATE:-$((ALERTS / 2))}
check_int LATE 0 $((ALERTS - 1))
EARLY=$((ALERTS - LATE))
check_int ATTEMPTS 1 20
check_int LIMIT 1 900
command -v xargs >/dev/null || die "needs xargs"

build_release
start_mock
write_config
start_relay

# ---- DingTalk fails; the alerts come in ----------------------------------------------------------
fault "$FAULT"
say "stand-in fault: $FAULT"
for ((i = 0; i < ALERTS; i++)); do
    make_alert "$i"
    printf '%s-%04d\n' "$NAME" "$i"
done >"$TMP/ids"
: >"$TMP/intake.codes"
post_range 0 $((EARLY - 1))

# ---- wait for failed sends, post the late alerts, SIGKILL ----------------------------------------
tried_enough() { (($(mock_requests) >= ATTEMPTS)); }
wait_for 90 tried_enough ||
    die "the stand-in saw fewer than $ATTEMPTS sends in 90 s"
tried=$(mock_requests)
post_range "$EARLY" $((ALERTS - 1))
intake=$(sort "$TMP/intake.codes" | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')
accepted=$(grep -c '^202$' "$TMP/intake.codes" || true)
say "intake answered ${intake:-nothing} ($EARLY alerts before $tried failed send(s), $LATE after)"
nap 1
pending_before=$(relay_pending)
alive "$RELAY_PID" || die "dingrelay exited before the kill"
exec 3>&2 2>/dev/null # bash would report the killed job ("Killed") on stderr
kill -KILL "$RELAY_PID"
wait "$RELAY_PID" || true
exec 2>&3 3>&-
RELAY_PID=
say "SIGKILLed dingrelay after $tried send(s) to the failing stand-in ($FAULT); outbox pending: $pending_before"
retries_logged=$(grep -c 'Sending to DingTalk failed' "$TMP/relay.log" || true)

# ---- recovery and restart ------------------------------------------------------------------------
fault none
say "stand-in fault cleared"
restart_at=$SECONDS
start_relay
pending_after=$(relay_pending)
say "restarted; outbox pending: $pending_after"

got=0
dup_alerts=0
dup_uuids=0
messages=0
while :; do
    read -r got dup_alerts dup_uuids messages < <(delivery_report "$TMP/ids") || true
    ((got >= ALERTS)) && break
    if ! alive "$RELAY_PID"; then
        say "dingrelay exited"
        break
    fi
    if ((SECONDS - restart_at >= LIMIT)); then
        say "gave up after $LIMIT s"
        break
    fi
    say "$got/$ALERTS alerts delivered $((SECONDS - restart_at)) s after the restart"
    nap 3
done
elapsed=$((SECONDS - restart_at))
# Late alerts delivered in a message before the last early alert's: out of order.
order() {
    python3 - "$TMP/messages.json" "$NAME" "$EARLY" <<'PY'
import json, re, sys
try:
    messages = json.load(open(sys.argv[1]))["messages"]
except (OSError, ValueError, KeyError):
    messages = []
early = int(sys.argv[3])
first = {}
for n, m in enumerate(messages):
    for a in re.findall(re.escape(sys.argv[2]) + r"-(\d{4})", json.dumps(m["body"], ensure_ascii=False)):
        first.setdefault(int(a), n)
last_early = max((n for a, n in first.items() if a < early), default=-1)
print(sum(1 for a, n in first.items() if a >= early and n < last_early))
PY
}
# A little longer, so a late duplicate would be seen.
if alive "$RELAY_PID" && ((got >= ALERTS)); then
    nap 5
    read -r got dup_alerts dup_uuids messages < <(delivery_report "$TMP/ids") || true
fi

out_of_order=$(order)

# ---- verdict -------------------------------------------------------------------------------------
read -r max_in_window throttled requests mock_accepted errcodes < <(stats_report) || true
levels=$(log_levels)
say "stand-in /_stats: $(cat "$TMP/stats.json")"
say "dingrelay log: $levels; transient failures logged before the kill: $retries_logged"
running=yes
alive "$RELAY_PID" || running=no
if [[ $running == no ]] || ((got < ALERTS)); then
    echo "--- dingrelay log (last 40 lines)"
    tail -n 40 "$TMP/relay.log"
fi

ok=1
((accepted == ALERTS)) || ok=0
((got == ALERTS)) || ok=0
((dup_alerts == 0 && dup_uuids == 0)) || ok=0
((out_of_order == 0)) || ok=0
((max_in_window <= RATE && throttled == 0)) || ok=0
[[ $running == yes ]] || ok=0
verdict=FAIL
((ok)) && verdict=PASS
say "$verdict: fault=$FAULT; $accepted/$ALERTS alerts accepted (202); SIGKILL after $tried failed or hanging send(s) with $pending_before pending; $got/$ALERTS delivered in $messages message(s) ${elapsed} s after the restart; duplicates: $dup_alerts alert(s), $dup_uuids msgUuid(s); late alerts delivered before early ones: $out_of_order; max_in_window=$max_in_window (limit $RATE); throttled=$throttled; errcodes=$errcodes"
((ok)) && exit 0 || exit 1
