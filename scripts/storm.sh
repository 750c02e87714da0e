#!/usr/bin/env bash
# A bounded alert storm on loopback: 200 distinct Alertmanager webhooks posted as fast as curl can,
# through the release binary, to the DingTalk stand-in (crates/mock-dingtalk). Checks that every
# alert reaches the group (in some message) while DingTalk never sees more than 20 messages a minute.
#
# Usage: scripts/storm.sh            (from anywhere; works in the repository root)
#
# Environment (and those of scripts/lib.sh: MOCK_DINGTALK, STORM_SKIP_BUILD, DINGRELAY_BIN,
# FAULTS_KEEP_TMP):
#   STORM_ALERTS      how many alerts (default 200, at most 1000)
#   STORM_LIMIT       seconds to wait for delivery (default 240, at most 900)
#
# Everything listens on 127.0.0.1 only. Every process is killed and the temporary directory
# removed on exit, whatever happens. Exit status: 0 when every alert was delivered, DingTalk saw at
# most 20 messages in any window and never throttled; 1 otherwise; 2 when the setup failed.

set -euo pipefail
NAME=storm
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALERTS=${STORM_ALERTS:-200}
LIMIT=${STORM_LIMIT:-240}
check_int ALERTS 1 1000
check_int LIMIT 1 900
command -v xargs >/dev/null || die "needs xargs"

build_release
start_mock
write_config
start_relay

# ---- the storm -----------------------------------------------------------------------------------
for ((i = 0; i < ALERTS; i++)); do
    make_alert "$i"
    printf '%s-%04d\n' "$NAME" "$i" >>"$TMP/ids"
done

say "posting $ALERTS alerts to $HOOK_URL"
storm_start=$SECONDS
seq 0 $((ALERTS - 1)) | timeout 120 xargs -P 32 -I{} \
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
    -H "Authorization: Bearer $BEARER" -H 'Content-Type: application/json' \
    --data-binary "@$TMP/alerts/{}.json" "$HOOK_URL" \
    >"$TMP/intake.codes" || true
intake=$(sort "$TMP/intake.codes" | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')
accepted=$(grep -c '^2' "$TMP/intake.codes" || true)
say "intake answered ${intake:-nothing} in $((SECONDS - storm_start)) s"

# ---- wait for delivery ---------------------------------------------------------------------------
deadline=$((storm_start + LIMIT))
got=0
while :; do
    read -r got _ _ _ < <(delivery_report "$TMP/ids")
    ((got >= ALERTS)) && break
    if ! alive "$RELAY_PID"; then
        say "dingrelay exited" >&2
        break
    fi
    if ((SECONDS >= deadline)); then
        say "gave up after ${LIMIT} s" >&2
        break
    fi
    say "$got/$ALERTS alerts delivered after $((SECONDS - storm_start)) s"
    nap 5
done
elapsed=$((SECONDS - storm_start))

# ---- verdict -------------------------------------------------------------------------------------
read -r max_in_window throttled _ messages errcodes < <(stats_report)
say "/_stats"
python3 -m json.tool --no-ensure-ascii "$TMP/stats.json" 2>/dev/null || cat "$TMP/stats.json"
if ! alive "$RELAY_PID" || ((got < ALERTS)); then
    echo "--- dingrelay log (last 40 lines)"
    tail -n 40 "$TMP/relay.log"
fi
refusals=$(tr ',' '\n' <<<"$errcodes" | grep -v '^0×' | grep -v '^none$' | paste -sd, - || true)
verdict=FAIL
((got == ALERTS && max_in_window <= RATE && throttled == 0)) && verdict=PASS
say "$verdict: $got/$ALERTS alerts delivered in $messages messages within $elapsed s ($accepted webhooks accepted); max_in_window=$max_in_window (limit $RATE); throttled=$throttled; refusals=${refusals:-none}"
[[ $verdict == PASS ]]
