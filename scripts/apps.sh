#!/usr/bin/env bash
# The robots of an app at real speed on loopback (docs/apps.md). The DingTalk stand-in serves a
# webhook robot and an internal app (key, secret, agent id) with users `lin` and `wang` and a group
# the app's robot is in; ONE rule sends each Alertmanager alert group to the webhook robot, to the
# app's robot in the group and, one-to-one, to the person in the alert's `owner` label (lin and wang
# in turn). N distinct alerts are posted in three parallel batches: after the first, once the app's
# robots have sent, the stand-in expires the app's token; after the second, once dingrelay has
# fetched a new token, dingrelay is SIGKILLed and started again on the same state directory; then
# the third. Checks that every alert reaches all three destinations (the one-to-one one: its owner,
# and no one else), with no dead letter, a handful of token fetches and neither the AppSecret nor an
# access token in dingrelay's log.
#
# Usage: scripts/apps.sh            (from anywhere)
#
# Environment (and those of scripts/lib.sh: MOCK_DINGTALK, STORM_SKIP_BUILD, DINGRELAY_BIN,
# CARGO_TARGET_DIR, FAULTS_KEEP_TMP):
#   APPS_ALERTS       how many alerts (default 60, 3..500)
#   APPS_LIMIT        seconds from the first post to wait for delivery (default 300, at most 900)
#   APPS_LATENCY_MS   how long the stand-in takes to answer each request, its control endpoints
#                     included (default 1000, 0..2000): DingTalk on a slow day, and what makes the
#                     SIGKILL (right after dingrelay's new token) land while sends are in flight
#
# Duplicates: the app APIs take no msgUuid, so a send in flight at the SIGKILL (dingrelay records
# it in the outbox's `in_flight` table before sending, and sends it again first after a restart)
# may show its message twice. They are counted at the kill, per robot, and a destination may
# repeat at most that many messages; the webhook robot's repeats must carry the same msgUuid
# (DingTalk drops them; the stand-in, like crash.sh's, records them).
#
# Token fetches: the stand-in counts every fetch. The script fetches the token itself twice (after
# `check`, and at the end) only to know the tokens it must not find in the log; those two are
# taken off. Expected: 1 by `check`, 1 at each daemon start, 1 after the expiry: 4 (at most 6).
#
# Loopback only; everything started is stopped and the temporary directory removed on exit.
# Exit status: 0 PASS, 1 FAIL, 2 setup error. The last line is the verdict.

set -euo pipefail
NAME=apps
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALERTS=${APPS_ALERTS:-60}
LIMIT=${APPS_LIMIT:-300}
LATENCY=${APPS_LATENCY_MS:-1000}
check_int ALERTS 3 500
check_int LIMIT 1 900
check_int LATENCY 0 2000
command -v xargs >/dev/null || die "needs xargs"

APP_KEY=dingapps7f3a9c0e1b2d
APP_SECRET=AppSEC-${NAME}-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST
AGENT_ID=4000001
CID=cidAppsRelayOps0123456789+/==
OWNERS=(lin wang)
APP_RATE=19         # rate_per_minute - 1: what dingrelay lets each app robot send in any 60 s
MAX_FETCHES=6
GROUP=$NAME-group   # the app's robot in the group
ONCALL=$NAME-oncall # the app's robot, one-to-one with the alert's owner

build_release
MOCK_ARGS=(--app "$APP_KEY:$APP_SECRET:$AGENT_ID" --user lin:Lin --user wang:Wang
    --conversation "$CID:$APP_KEY" --latency-ms "$LATENCY")
start_mock

# ---- rules.yaml: one rule, three robots ----------------------------------------------------------
relay_address
printf '%s' "$APP_SECRET" >"$TMP/app_secret"
chmod 600 "$TMP/app_secret"
cat >"$TMP/rules.yaml" <<YAML
# Written by scripts/$NAME.sh.
listen: 127.0.0.1:$RELAY_PORT
state_dir: $TMP/state
timezone: UTC

apps:
  ops:
    app_key: $APP_KEY
    app_secret_file: $TMP/app_secret
    agent_id: $AGENT_ID
    base_url: $MOCK_URL

robots:
  $NAME:
    webhook: $MOCK_URL/robot/send?access_token=$TOKEN
    secret: $SECRET
    keywords: [$KEYWORD]
    allow_host: 127.0.0.1:$MOCK_PORT
  $GROUP:
    app: ops
    conversation: "$CID"
  $ONCALL:
    app: ops
    kind: one_to_one
    users: ['{{ commonLabels.owner }}']

sources:
  alertmanager:
    kind: alertmanager
    auth: { bearer: $BEARER }

rules:
  - name: $NAME
    source: alertmanager
    to: [$NAME, $GROUP, $ONCALL]
    markdown:
      title: "$KEYWORD {{ alerts[0].labels.relay_id }}: {{ alerts | length }} alert(s)"
      text: |
        ### $KEYWORD {{ alerts[0].labels.alertname }} (owner {{ commonLabels.owner }})
        {% for alert in alerts %}
        - {{ alert.labels.relay_id }} on {{ alert.labels.instance }}
        {% endfor %}
YAML
check_config
grep -q "app \`ops\`: DingTalk gave an access token" "$TMP/check.log" ||
    { cat "$TMP/check.log" >&2; die "dingrelay check did not fetch the app's token"; }

# ---- the stand-in's view of the app --------------------------------------------------------------
# One figure of /_stats for our app: token_fetches or tokens_issued (0 when it does not answer).
app_stat() {
    curl -s --max-time 5 "$MOCK_URL/_stats" 2>/dev/null |
        python3 -c 'import json, sys
try: print(json.load(sys.stdin)[sys.argv[1]].get(sys.argv[2], 0))
except Exception: print(0)' "$1" "$APP_KEY"
}
# Fetches the app's token as dingrelay does (the current one while valid) and adds it to APP_TOKENS,
# the tokens to look for in the log; the fetch counts in the stand-in's token_fetches, so
# OWN_FETCHES keeps the count.
APP_TOKENS=()
OWN_FETCHES=0
capture_token() {
    local token
    token=$(curl -s --max-time 5 "$MOCK_URL/gettoken?appkey=$APP_KEY&appsecret=$APP_SECRET" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') ||
        die "could not read the app's token from the stand-in"
    [[ $token =~ ^[0-9a-f]{16,}$ ]] || die "the stand-in's token looks odd: $token"
    APP_TOKENS+=("$token")
    OWN_FETCHES=$((OWN_FETCHES + 1))
}
# The stand-in's messages to our app's robots on channel $1 (app_robot_group, app_robot_oto).
app_messages() {
    curl -s --max-time 5 "$MOCK_URL/_messages?channel=$1" 2>/dev/null |
        python3 -c 'import json, sys
try: print(len(json.load(sys.stdin)["messages"]))
except Exception: print(0)'
}
capture_token

start_relay

# ---- alerts --------------------------------------------------------------------------------------
for ((i = 0; i < ALERTS; i++)); do
    owner=${OWNERS[i % 2]}
    make_alert "$i" "\"owner\":\"$owner\""
    printf '%s-%04d %s\n' "$NAME" "$i" "$owner"
done >"$TMP/ids"
# Sum of dingrelay_outbox_pending over the robots ("?" when dingrelay does not answer).
pending_all() {
    curl -s --max-time 5 "$RELAY_URL/metrics" 2>/dev/null |
        awk '/^dingrelay_outbox_pending\{/ { n += $2; found = 1 } END { if (found) print n; else print "?" }'
}

A1=$((ALERTS / 3))
A2=$((2 * ALERTS / 3))
: >"$TMP/intake.codes"
run_start=$SECONDS
post_range 0 $((A1 - 1))

# ---- the token expires, while the app's robots are sending ---------------------------------------
both_sent() { (($(app_messages app_robot_group) >= 1 && $(app_messages app_robot_oto) >= 1)); }
wait_for 60 both_sent || die "the app's robots sent nothing within 60 s"
fetches_at_expiry=$(app_stat token_fetches)
expired=$(curl -s --max-time 5 -X POST "$MOCK_URL/_expire?appkey=$APP_KEY") ||
    die "could not expire the app's token"
[[ $expired == *"$APP_KEY"* ]] || die "the stand-in expired nothing: $expired"
expired_at=$((SECONDS - run_start))
say "t=${expired_at}s: the stand-in expired the app's token (fetches so far: $fetches_at_expiry)"
post_range "$A1" $((A2 - 1))
refetched() { (($(app_stat token_fetches) > fetches_at_expiry)); }
wait_for 60 refetched || die "dingrelay did not fetch a new token within 60 s of the expiry"
say "t=$((SECONDS - run_start))s: dingrelay fetched a new token ($(app_stat tokens_issued) issued so far)"

# ---- SIGKILL in the middle, restart on the same state directory ----------------------------------
alive "$RELAY_PID" || die "dingrelay exited before the kill"
pending_at_kill=$(pending_all)
exec 3>&2 2>/dev/null # bash would report the killed job ("Killed") on stderr
kill -KILL "$RELAY_PID"
wait "$RELAY_PID" || true
exec 2>&3 3>&-
RELAY_PID=
killed_at=$((SECONDS - run_start))
# Prints the sends in flight, per robot named in the arguments, while dingrelay is down: the
# worker's in_flight record whose rows are still pending (src/outbox/mod.rs), which the restarted
# worker sends again, first ("?" when the outbox cannot be read).
in_flight_counts() {
    python3 - "$TMP/state/outbox.sqlite3" "$@" <<'PY'
import sqlite3, sys
try:
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    counts = []
    for robot in sys.argv[2:]:
        counts.append(db.execute(
            "SELECT count(*) FROM in_flight WHERE robot = ?1 AND EXISTS ("
            " SELECT 1 FROM messages, json_each(in_flight.ids) AS j"
            " WHERE messages.id = j.value AND messages.state = 'pending')", (robot,)).fetchone()[0])
    print(*counts)
except Exception:
    print(*["?"] * (len(sys.argv) - 2))
PY
}
read -r fl_hook fl_group fl_oncall < <(in_flight_counts "$NAME" "$GROUP" "$ONCALL")
in_flight="webhook $fl_hook, group $fl_group, one-to-one $fl_oncall"
say "t=${killed_at}s: SIGKILLed dingrelay; outbox pending: $pending_at_kill; sends in flight: $in_flight"
start_relay
say "t=$((SECONDS - run_start))s: restarted on the same state directory; outbox pending: $(pending_all)"
post_range "$A2" $((ALERTS - 1))
intake=$(sort "$TMP/intake.codes" | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')
accepted=$(grep -c '^202$' "$TMP/intake.codes" || true)
say "intake answered ${intake:-nothing}"

# ---- delivery, per destination -------------------------------------------------------------------
# Prints, from /_messages and the ids file ("ID OWNER" lines):
#   HOOK GROUP ONCALL             alerts delivered to each destination (one-to-one: to its owner)
#   DUPM_HOOK DUPM_GROUP DUPM_ONCALL  messages repeating an alert already delivered there
#   DUPA_HOOK DUPA_GROUP DUPA_ONCALL  extra deliveries of alerts (an alert in 2 messages counts 1)
#   DUP_UUIDS                     webhook messages repeating an earlier msgUuid
#   WRONG                         alerts in a one-to-one message to someone else than their owner
#   MSG_HOOK MSG_GROUP MSG_ONCALL messages
#   MAX_GROUP MAX_ONCALL MAX_PERSON  most app-robot messages in any 60 s: the group robot, the
#                                 one-to-one robot (everyone), the one-to-one robot to one person
apps_report() {
    curl -s --max-time 5 "$MOCK_URL/_messages" >"$TMP/messages.json" 2>/dev/null || echo '{}' >"$TMP/messages.json"
    python3 - "$TMP/messages.json" "$TMP/ids" "$NAME" "$APP_KEY" "$CID" <<'PY'
import collections, json, re, sys
try:
    messages = json.load(open(sys.argv[1]))["messages"]
except (OSError, ValueError, KeyError):
    messages = []
owner = dict(line.split() for line in open(sys.argv[2]) if line.strip())
pattern = re.compile(re.escape(sys.argv[3]) + r"-\d{4}")
app_key, cid = sys.argv[4], sys.argv[5]
messages.sort(key=lambda m: m.get("at_ms", 0))
seen = {"hook": collections.Counter(), "group": collections.Counter(), "oncall": collections.Counter()}
dup_messages = collections.Counter()
count = collections.Counter()
times = collections.defaultdict(list)
uuids = collections.Counter()
wrong = set()
def deliver(dest, key, alerts):
    counter = seen[dest]
    if any(counter[(key, a)] for a in alerts):
        dup_messages[dest] += 1
    for a in alerts:
        counter[(key, a)] += 1
for m in messages:
    channel = m.get("channel")
    if channel == "robot":
        body = m.get("body") or {}
        alerts = set(pattern.findall(json.dumps(body, ensure_ascii=False))) & owner.keys()
        if body.get("msgUuid"):
            uuids[body["msgUuid"]] += 1
        count["hook"] += 1
        deliver("hook", "", alerts)
    elif channel == "app_robot_group" and m.get("app") == app_key and m.get("openConversationId") == cid:
        alerts = set(pattern.findall(json.dumps(m.get("msgParam"), ensure_ascii=False))) & owner.keys()
        count["group"] += 1
        times["group"].append(m["at_ms"])
        deliver("group", "", alerts)
    elif channel == "app_robot_oto" and m.get("app") == app_key:
        alerts = set(pattern.findall(json.dumps(m.get("msgParam"), ensure_ascii=False))) & owner.keys()
        count["oncall"] += 1
        times["oncall"].append(m["at_ms"])
        for user in m.get("userIds") or []:
            times["person " + user].append(m["at_ms"])
            wrong |= {a for a in alerts if owner[a] != user}
            deliver("oncall", user, {a for a in alerts if owner[a] == user})
def got(dest):
    if dest == "oncall":
        return sum(1 for a, o in owner.items() if seen[dest][(o, a)] > 0)
    return sum(1 for a in owner if seen[dest][("", a)] > 0)
def extra(dest):
    return sum(n - 1 for n in seen[dest].values() if n > 1)
def max60(ts):
    ts = sorted(ts)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= 60000:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
dests = ("hook", "group", "oncall")
person = max((max60(v) for k, v in times.items() if k.startswith("person ")), default=0)
print(*[got(d) for d in dests], *[dup_messages[d] for d in dests], *[extra(d) for d in dests],
      sum(n - 1 for n in uuids.values() if n > 1), len(wrong), *[count[d] for d in dests],
      max60(times["group"]), max60(times["oncall"]), person)
PY
}

read_report() {
    read -r got_hook got_group got_oncall dupm_hook dupm_group dupm_oncall dupa_hook dupa_group \
        dupa_oncall dup_uuids wrong msg_hook msg_group msg_oncall max_group max_oncall max_person \
        < <(apps_report) || true
}
read_report
while :; do
    ((got_hook >= ALERTS && got_group >= ALERTS && got_oncall >= ALERTS)) && break
    if ! alive "$RELAY_PID"; then
        say "dingrelay exited"
        break
    fi
    if ((SECONDS - run_start >= LIMIT)); then
        say "gave up after $LIMIT s"
        break
    fi
    say "t=$((SECONDS - run_start))s: delivered: webhook $got_hook/$ALERTS, group $got_group/$ALERTS, one-to-one $got_oncall/$ALERTS (outbox pending: $(pending_all))"
    nap 3
    read_report
done
elapsed=$((SECONDS - run_start))
if alive "$RELAY_PID" && ((got_hook >= ALERTS && got_group >= ALERTS && got_oncall >= ALERTS)); then
    nap 5 # so a late repeat would be seen
    read_report
fi

# ---- what is left: dead letters, token fetches, secrets in the log -------------------------------
"$BIN" outbox --config "$TMP/rules.yaml" list --state dead >"$TMP/dead.txt" 2>&1 || true
dead=$(awk '/^robot `/ { dead += $5; found = 1 } END { if (found) print dead + 0; else print "?" }' "$TMP/dead.txt")
fetches_total=$(app_stat token_fetches)
issued=$(app_stat tokens_issued)
fetches=$((fetches_total - OWN_FETCHES))
fetches_logged=$(grep -c "Fetched the app's access token" "$TMP/relay.log" || true)
refusals_logged=$(grep -c "DingTalk refused the app's access token" "$TMP/relay.log" || true)
capture_token
captured=$(printf '%s\n' "${APP_TOKENS[@]}" | sort -u | grep -c . || true)
leaks=0
leaked=()
for what in "$APP_SECRET" "${APP_TOKENS[@]}"; do
    n=$(cat "$TMP/relay.log" "$TMP/check.log" | grep -cF -- "$what" || true)
    if ((n > 0)); then
        leaks=$((leaks + n))
        leaked+=("${what:0:6}…")
    fi
done
failed_sends=$(grep -c 'Sending to DingTalk failed' "$TMP/relay.log" || true)
read -r hook_max_in_window throttled _ _ hook_errcodes < <(stats_report) || true
app_codes=$(python3 - "$TMP/stats.json" <<'PY'
import json, sys
try:
    channels = json.load(open(sys.argv[1])).get("channels") or {}
except (OSError, ValueError):
    channels = {}
print("; ".join(f"{name} " + ",".join(f"{c}×{n}" for c, n in sorted(ch.get("by_code", {}).items()))
                for name, ch in sorted(channels.items())) or "none")
PY
)
say "stand-in /_stats: $(cat "$TMP/stats.json")"
say "app answers: $app_codes; webhook errcodes: $hook_errcodes"
say "dingrelay log: $(log_levels); failed sends logged: $failed_sends; start-up token fetches logged: $fetches_logged; tokens refused (renewed and sent again) logged: $refusals_logged"
running=yes
alive "$RELAY_PID" || running=no
if [[ $running == no ]] || ((got_hook < ALERTS || got_group < ALERTS || got_oncall < ALERTS)); then
    echo "--- dingrelay log (last 40 lines)"
    tail -n 40 "$TMP/relay.log"
fi
[[ $dead == 0 ]] || cat "$TMP/dead.txt"

# ---- verdict -------------------------------------------------------------------------------------
# A destination may repeat at most the messages its robot had in flight at the kill (unknown: 1).
allow() { [[ $1 =~ ^[0-9]+$ ]] && echo "$1" || echo 1; }
ok=1
why=()
((got_hook == ALERTS && got_group == ALERTS && got_oncall == ALERTS)) || { ok=0; why+=("undelivered"); }
((wrong == 0)) || { ok=0; why+=("one-to-one to the wrong person"); }
((dupm_hook <= $(allow "$fl_hook") && dup_uuids >= dupm_hook)) || { ok=0; why+=("webhook duplicates"); }
((dupm_group <= $(allow "$fl_group"))) || { ok=0; why+=("group duplicates"); }
((dupm_oncall <= $(allow "$fl_oncall"))) || { ok=0; why+=("one-to-one duplicates"); }
[[ $dead == 0 ]] || { ok=0; why+=("dead letters"); }
((fetches <= MAX_FETCHES)) || { ok=0; why+=("token fetches"); }
((leaks == 0)) || { ok=0; why+=("secret or token in the log: ${leaked[*]}"); }
((max_group <= APP_RATE && max_oncall <= APP_RATE)) || { ok=0; why+=("app robot rate"); }
((hook_max_in_window <= RATE && throttled == 0)) || { ok=0; why+=("webhook rate"); }
[[ $running == yes ]] || { ok=0; why+=("dingrelay not running"); }
verdict=FAIL
((ok)) && verdict=PASS
say "$verdict${why:+ (${why[*]})}: $accepted/$ALERTS webhooks accepted (202); delivered within $elapsed s: webhook $got_hook/$ALERTS in $msg_hook msg, group app robot $got_group/$ALERTS in $msg_group msg, one-to-one $got_oncall/$ALERTS to their owner in $msg_oncall msg (to someone else: $wrong); repeated messages: webhook $dupm_hook (same msgUuid: $dup_uuids), group $dupm_group, one-to-one $dupm_oncall (alerts: $dupa_hook, $dupa_group, $dupa_oncall) with sends in flight at the SIGKILL (t=${killed_at}s, $pending_at_kill pending): $in_flight; token expired at t=${expired_at}s; token fetches by check and dingrelay $fetches (limit $MAX_FETCHES; the script's own $OWN_FETCHES not counted; $issued token(s) issued, $captured looked for in the log); app robot messages in any 60 s: group $max_group, one-to-one $max_oncall, one person $max_person (limit $APP_RATE); webhook max_in_window=$hook_max_in_window, throttled=$throttled; dead letters: $dead; secret/token in the log: $leaks"
((ok)) && exit 0 || exit 1
