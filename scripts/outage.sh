#!/usr/bin/env bash
# A DingTalk outage at real speed: the stand-in answers HTTP 500, then an HTML page, then hangs
# (each for OUTAGE_PHASE seconds, 40 by default: two minutes in all) while one distinct
# Alertmanager alert arrives every second; then DingTalk recovers. Checks that every alert is
# accepted (202) and reaches the group, none twice, within the stand-in's rate, and reports how
# long the backlog took to drain after the recovery and why (dingrelay's backoff: full jitter,
# ceiling 2 s doubling per failed attempt, capped at 5 minutes).
#
# Usage: scripts/outage.sh            (from anywhere)
#
# Environment:
#   OUTAGE_PHASE      seconds of each failure mode (default 40, 5..300)
#   OUTAGE_MODES      the stand-in's failure modes, in order (default "http500 html hang"; also
#                     busy = errcode -1, reset = connection closed without an answer)
#   OUTAGE_LIMIT      seconds to wait for the drain after the recovery (default 480, at most 900:
#                     the backoff alone can defer the first attempt after recovery by 5 minutes)
#   STORM_SKIP_BUILD, MOCK_DINGTALK, DINGRELAY_BIN: see scripts/lib.sh
#
# Loopback only; everything started is stopped and the temporary directory removed on exit.
# Exit status: 0 PASS, 1 FAIL, 2 setup error. The last line is the verdict.

set -euo pipefail
NAME=outage
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PHASE=${OUTAGE_PHASE:-40}
LIMIT=${OUTAGE_LIMIT:-480}
check_int PHASE 5 300
check_int LIMIT 1 900
read -r -a MODES <<<"${OUTAGE_MODES:-http500 html hang}"
((${#MODES[@]} >= 1 && ${#MODES[@]} <= 5)) || die "OUTAGE_MODES must name 1 to 5 modes"
for mode in "${MODES[@]}"; do
    [[ $mode =~ ^(http500|html|hang|busy|reset)$ ]] || die "unknown mode in OUTAGE_MODES: $mode"
done
TOTAL=$((PHASE * ${#MODES[@]}))   # one alert a second during the outage

build_release
start_mock
write_config
start_relay

for ((i = 0; i < TOTAL; i++)); do
    make_alert "$i"
    printf '%s-%04d\n' "$NAME" "$i"
done >"$TMP/ids"

now_us() { echo $((${EPOCHREALTIME/./})); }
# Sleeps until the absolute time $1 (µs since the epoch), if it is still ahead.
sleep_until_us() {
    local left=$(($1 - $(now_us)))
    ((left > 0)) && nap "$(printf '%d.%06d' $((left / 1000000)) $((left % 1000000)))"
    return 0
}

# ---- the outage, with an alert a second ----------------------------------------------------------
outage_start=$(now_us)
: >"$TMP/intake.codes"
for ((t = 0; t < TOTAL; t++)); do
    if ((t % PHASE == 0)); then
        mode=${MODES[t / PHASE]}
        fault "$mode"
        say "t=${t}s: stand-in fault $mode (sends so far: $(mock_requests); outbox pending: $(relay_pending))"
    fi
    post_alert "$t" >>"$TMP/intake.codes"
    sleep_until_us $((outage_start + (t + 1) * 1000000))
done
pending_at_recovery=$(relay_pending)
sends_during_outage=$(mock_requests)
fault none
recovered=$(now_us)
say "t=${TOTAL}s: stand-in recovered (fault none) after $sends_during_outage failed send(s); outbox pending: $pending_at_recovery"
intake=$(sort "$TMP/intake.codes" | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')
accepted=$(grep -c '^202$' "$TMP/intake.codes" || true)
say "intake answered ${intake:-nothing} during the outage"

# ---- the drain -----------------------------------------------------------------------------------
got=0
dup_alerts=0
dup_uuids=0
messages=0
while :; do
    read -r got dup_alerts dup_uuids messages < <(delivery_report "$TMP/ids") || true
    ((got >= TOTAL)) && break
    if ! alive "$RELAY_PID"; then
        say "dingrelay exited"
        break
    fi
    if (($(now_us) - recovered >= LIMIT * 1000000)); then
        say "gave up $LIMIT s after the recovery"
        break
    fi
    say "$got/$TOTAL alerts delivered $((($(now_us) - recovered) / 1000000)) s after the recovery (outbox pending: $(relay_pending))"
    nap 5
done
if alive "$RELAY_PID" && ((got >= TOTAL)); then
    nap 5 # so a late duplicate would be seen
    read -r got dup_alerts dup_uuids messages < <(delivery_report "$TMP/ids") || true
fi

# ---- why the drain took what it took: dingrelay's failed sends and their backoff ------------------
python3 - "$TMP/relay.log" "$recovered" "$TMP/messages.json" "$TMP/ids" >"$TMP/backoff.txt" <<'PY' || true
import datetime, json, re, sys
log, recovered_us, messages, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
recovered = recovered_us / 1e6
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
fails = []
for line in open(log, encoding="utf-8", errors="replace"):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    f = rec.get("fields", {})
    if f.get("message") == "Sending to DingTalk failed.":
        fails.append((ts(rec["timestamp"]), f.get("attempt"), f.get("retry_in_ms"), f.get("errmsg", "")))
try:
    delivered = json.load(open(messages))["messages"]
except (OSError, ValueError, KeyError):
    delivered = []
wanted = {l.strip() for l in open(ids) if l.strip()}
first_seen = {}
for m in delivered:
    for alert in set(re.findall(r"outage-\d{4}", json.dumps(m["body"], ensure_ascii=False))):
        first_seen.setdefault(alert, m["at_ms"] / 1000)
first_ok = min((m["at_ms"] / 1000 for m in delivered), default=None)
print("failed sends logged by dingrelay (time from the outage's end, attempt, backoff drawn, reason):")
for at, attempt, retry_ms, errmsg in fails:
    print(f"  {at - recovered:+8.1f} s  attempt {attempt}  retry in {retry_ms / 1000:6.1f} s  {errmsg[:70]}")
def mode(reason):
    for word, name in (("HTTP 500", "http500"), ("HTML", "html"), ("timed out", "hang"), ("-1", "busy")):
        if word in reason:
            return name
    return "other"
tally = {}
for _, _, _, errmsg in fails:
    tally[mode(errmsg)] = tally.get(mode(errmsg), 0) + 1
print("failed sends by mode: " + (", ".join(f"{k}×{v}" for k, v in tally.items()) or "none"))
if fails:
    at, attempt, retry_ms, _ = fails[-1]
    due = at + retry_ms / 1000 - recovered
    print(f"last failure logged: attempt {attempt}, next attempt due {due:+.1f} s from the recovery")
if first_ok is not None:
    print(f"first message accepted by the stand-in {first_ok - recovered:+.1f} s from the recovery")
if wanted and wanted <= first_seen.keys():
    print(f"drain_s={max(first_seen[a] for a in wanted) - recovered:.1f}")
PY

# ---- verdict -------------------------------------------------------------------------------------
read -r max_in_window throttled requests mock_accepted errcodes < <(stats_report) || true
grep -v '^drain_s=' "$TMP/backoff.txt" || true
drain=$(sed -n 's/^drain_s=//p' "$TMP/backoff.txt")
say "stand-in /_stats: $(cat "$TMP/stats.json")"
say "dingrelay log: $(log_levels)"
running=yes
alive "$RELAY_PID" || running=no
if [[ $running == no ]] || ((got < TOTAL)); then
    echo "--- dingrelay log (last 40 lines)"
    tail -n 40 "$TMP/relay.log"
fi
by_mode=$(sed -n 's/^failed sends by mode: //p' "$TMP/backoff.txt")
last_due=$(sed -n 's/^last failure logged: \(attempt [0-9]*\), next attempt due \(.*\) from the recovery$/\1 due \2/p' "$TMP/backoff.txt")

ok=1
((accepted == TOTAL)) || ok=0
((got == TOTAL)) || ok=0
((dup_alerts == 0 && dup_uuids == 0)) || ok=0
((max_in_window <= RATE && throttled == 0)) || ok=0
[[ $running == yes ]] || ok=0
verdict=FAIL
((ok)) && verdict=PASS
say "$verdict: ${TOTAL} s outage (${MODES[*]}, ${PHASE} s each), 1 alert/s; $accepted/$TOTAL accepted (202); failed sends: ${by_mode:-none}; $got/$TOTAL delivered in $messages message(s), drained ${drain:-never} s after the recovery (${last_due:-no backoff logged}); duplicates: $dup_alerts alert(s), $dup_uuids msgUuid(s); max_in_window=$max_in_window (limit $RATE); throttled=$throttled; errcodes=$errcodes"
((ok)) && exit 0 || exit 1
