#!/usr/bin/env bash
# The process-level cases of issue 12 (docs/reliability.md), at real speed against the release
# binary, each on a fresh state directory and bounded in time (≤ ~60 s each):
#   case 3  the outbox file deleted while the daemon runs: webhooks 503, /-/ready 503, an ERROR
#   case 4  a read-only outbox: refused at start with one line; a full disk (a 2 MiB tmpfs in a
#           private namespace, filled): webhooks 503 and /-/ready 503 until there is room, and
#           every webhook answered 202 delivered once
#   case 5  a write lock held 8 s by another process, request_timeout 2 s: every webhook answered
#           408 is not stored (events stored = 202s), and after the retries none is lost or doubled
#   case 6  a second daemon on the same state_dir: refused with one line naming the first's pid;
#           the first keeps answering and the robot stays within 19 messages a minute
#   case 8  1,200 connections sending partial headers: normal requests are still answered and
#           the partial ones are closed by the server (10 s header timeout)
#   case 9  40 concurrent requests with a wrong bearer token and a 25 MB body: all 401, and
#           dingrelay's RSS stays small
#   case 1  the outbox refuses the `delivered` record (a trigger): the message is sent once in
#           30 s; once the trigger is dropped, the next message is delivered
#   case 2  SIGKILL during a hanging send, restart with DingTalk healthy: the first request
#           carries the in-flight msgUuid, and no alert goes out under two msgUuids
# One line of figures per case, PASS or FAIL; the last line is the verdict.
#
# Usage: scripts/hardening.sh            (from anywhere)
#
# Environment:
#   HARDENING_CASES   which cases, space-separated (default "3 4 5 6 8 9 1 2")
#   HARDENING_SLOW    partial-header connections of case 8 (default 1200)
#   STORM_SKIP_BUILD, MOCK_DINGTALK, DINGRELAY_BIN, CARGO_TARGET_DIR: see scripts/lib.sh
#
# Loopback only; everything started is stopped and the temporary directory removed on exit.
# Exit status: 0 all PASS, 1 some FAIL, 2 setup error.

set -euo pipefail
NAME=hardening
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=${HARDENING_CASES:-3 4 5 6 8 9 1 2}
SLOW=${HARDENING_SLOW:-1200}
check_int SLOW 1 5000
command -v xargs >/dev/null || die "needs xargs"

build_release
start_mock

FAILED=0
# Prints the verdict line of case $1: PASS when $2 is 1; figures in the rest.
verdict() {
    local case=$1 ok=$2
    shift 2
    local v=FAIL
    ((ok)) && v=PASS
    ((ok)) || FAILED=$((FAILED + 1))
    say "case $case $v: $*"
}

# A fresh dingrelay on a fresh state directory, and a stand-in without faults or messages; $1:
# extra top-level config lines.
fresh_relay() {
    stop "$RELAY_PID"
    RELAY_PID=
    rm -rf "$TMP/state" "$TMP/alerts"
    : >"$TMP/relay.log"
    curl -sf -o /dev/null --max-time 5 -X POST "$MOCK_URL/_reset" || die "could not reset the stand-in"
    fault none
    write_config "${1:-}"
    start_relay
}

# Posts alerts $1..$2 (made first), 8 at a time; prints their statuses as "202×10, 503×2".
post_many() {
    local i
    for ((i = $1; i <= $2; i++)); do make_alert "$i"; done
    seq "$1" "$2" | timeout 60 xargs -P 8 -I{} \
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
        -H "Authorization: Bearer $BEARER" -H 'Content-Type: application/json' \
        --data-binary "@$TMP/alerts/{}.json" "$HOOK_URL" | sort | uniq -c |
        awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}'
}

status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" || true; }
hwm_kib() { awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }
errors_logged() { grep -c '"level":"ERROR"' "$TMP/relay.log" || true; }

# Posts alert $1 (made first) and appends "N CODE SECONDS" to the file $2.
post_timed() {
    make_alert "$1"
    curl -s -o /dev/null -w "$1 %{http_code} %{time_total}\n" --max-time 30 \
        -H "Authorization: Bearer $BEARER" -H 'Content-Type: application/json' \
        --data-binary "@$TMP/alerts/$1.json" "$HOOK_URL" >>"$2" || echo "$1 000 30" >>"$2"
}

# How many events the outbox holds (read-only; "?" when it cannot be read). $1: the file.
events_stored() {
    python3 - "$1" <<'PY'
import sqlite3, sys
try:
    c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
    print(c.execute("SELECT count(*) FROM events").fetchone()[0])
except Exception:
    print("?")
PY
}

# Reads the answers file $1 ("N CODE SECONDS" lines, a later line for N superseding an earlier
# one) and the stand-in's messages; prints "ANSWERS ACCEPTED DELIVERED LOST DUPLICATED
# UNACCEPTED_DELIVERED": the answers by status (like 202×8,408×3), the alerts answered 202, how
# many of them were delivered, how many not (lost), how many extra deliveries there were, and
# how many alerts never answered 202 reached DingTalk anyway.
answers_report() {
    curl -s --max-time 5 "$MOCK_URL/_messages" >"$TMP/messages.json" 2>/dev/null || echo '{}' >"$TMP/messages.json"
    python3 - "$TMP/messages.json" "$1" "$NAME" <<'PY'
import collections, json, re, sys
try:
    messages = json.load(open(sys.argv[1]))["messages"]
except (OSError, ValueError, KeyError):
    messages = []
answers = collections.Counter()
final = {}
for line in open(sys.argv[2]):
    n, code, _ = line.split()
    answers[code] += 1
    final[int(n)] = code
pattern = re.compile(re.escape(sys.argv[3]) + r"-(\d{4})")
seen = collections.Counter()
for m in messages:
    for n in set(pattern.findall(json.dumps(m.get("body") or {}, ensure_ascii=False))):
        seen[int(n)] += 1
accepted = [n for n, code in final.items() if code == "202"]
delivered = sum(1 for n in accepted if seen[n] > 0)
dup = sum(seen[n] - 1 for n in final if seen[n] > 1)
unaccepted = sum(1 for n, code in final.items() if code != "202" and seen[n] > 0)
text = ",".join(f"{c}×{k}" for c, k in sorted(answers.items()))
print(text, len(accepted), delivered, len(accepted) - delivered, dup, unaccepted)
PY
}

# Waits up to $2 s until every alert answered 202 in the answers file $1 has been delivered.
wait_delivered() {
    local deadline=$((SECONDS + $2)) report
    while ((SECONDS < deadline)); do
        read -r -a report < <(answers_report "$1") || true
        ((${report[3]:-1} == 0)) && return 0
        nap 1
    done
    return 1
}

# ---- case 3: the outbox file deleted while the daemon runs ---------------------------------------
case_3() {
    fresh_relay
    local before after ready errors
    before=$(post_many 0 9)
    nap 1
    rm -f "$TMP/state/outbox.sqlite3" "$TMP/state/outbox.sqlite3-wal" "$TMP/state/outbox.sqlite3-shm"
    nap 0.5
    after=$(post_many 10 19)
    ready=$(status_of "$RELAY_URL/-/ready")
    errors=$(errors_logged)
    local ok=1
    [[ $before == "202×10" ]] || ok=0
    [[ $after == "503×10" ]] || ok=0
    [[ $ready == 503 ]] || ok=0
    ((errors >= 1)) || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 3 "$ok" "before the delete: $before; after: $after; /-/ready $ready; ERROR lines: $errors"
}

# ---- case 6: a second daemon on the same state_dir ------------------------------------------------
case_6() {
    fresh_relay
    local port2 rc=0 t0 took lines names_pid=no healthy_ok=0 healthy_bad=0 mw
    port2=$(free_port)
    sed "s/^listen: .*/listen: 127.0.0.1:$port2/" "$TMP/rules.yaml" >"$TMP/rules2.yaml"
    # The first is asked to send all along: 60 alerts, posted while the second tries to start.
    post_many 0 29 >"$TMP/case6.intake1" &
    local poster=$!
    t0=$(date +%s%N)
    timeout 20 "$BIN" serve --config "$TMP/rules2.yaml" >"$TMP/second.log" 2>&1 || rc=$?
    took=$((($(date +%s%N) - t0) / 1000000))
    wait "$poster" || true
    post_many 30 59 >"$TMP/case6.intake2"
    lines=$(grep -c 'Cannot start' "$TMP/second.log" || true)
    grep 'Cannot start' "$TMP/second.log" | grep -qw "$RELAY_PID" && names_pid=yes
    local i
    for i in $(seq 20); do
        if [[ $(status_of "$RELAY_URL/-/healthy") == 200 ]]; then healthy_ok=$((healthy_ok + 1)); else healthy_bad=$((healthy_bad + 1)); fi
        nap 0.5
    done
    read -r mw _ < <(stats_report) || true
    local ok=1
    ((rc != 0 && rc != 124 && took <= 5000)) || ok=0
    ((lines == 1)) && [[ $names_pid == yes ]] || ok=0
    ((healthy_bad == 0)) || ok=0
    ((mw <= 19)) || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 6 "$ok" "second daemon exited $rc in ${took} ms, 'Cannot start' lines: $lines, names pid $RELAY_PID: $names_pid; first: intake $(cat "$TMP/case6.intake1"); $(cat "$TMP/case6.intake2"), /-/healthy 200×$healthy_ok, other×$healthy_bad; stand-in max per 60 s: $mw (≤ 19)"
    [[ $ok == 1 ]] || sed 's/^/    second: /' "$TMP/second.log" | head -5
}

# ---- case 8: slow connections (partial headers) ---------------------------------------------------
case_8() {
    fresh_relay
    python3 - "$RELAY_PORT" "$RELAY_PID" "$SLOW" >"$TMP/case8.out" 2>&1 <<'PY' || true
import socket, sys, threading, time, http.client
port, pid, N = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
LIMIT = 30.0

def rss():
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

socks, opened, refused = [], 0, 0
t0 = time.monotonic()
for i in range(N):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        s.setblocking(False)
        socks.append(s)
        opened += 1
    except OSError:
        refused += 1
        s.close()
open_s = time.monotonic() - t0

# Normal requests during the slowloris, one every 50 ms, each with a 5 s timeout.
lat, failed, kinds, fail_t = [], 0, {}, []
closed_at = {}
peak_rss = rss()
start = time.monotonic()
while time.monotonic() - start < LIMIT:
    now = time.monotonic()
    for i, s in enumerate(socks):
        if i in closed_at:
            continue
        try:
            data = s.recv(4096)
            if data == b"" or data:
                closed_at[i] = now - t0
        except BlockingIOError:
            pass
        except OSError:
            closed_at[i] = now - t0
    if len(closed_at) == len(socks) and now - start > 2:
        break
    if now - start < 15:
        r0 = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/-/healthy")
            ok = c.getresponse().status == 200
            c.close()
        except (OSError, http.client.HTTPException) as e:
            ok = False
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        if ok:
            lat.append((time.monotonic() - r0) * 1000)
        else:
            failed += 1
            fail_t.append(r0 - t0)
    peak_rss = max(peak_rss, rss())
    time.sleep(0.05)
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else -1
by15 = sum(1 for t in closed_at.values() if t <= 15)
last = max(closed_at.values(), default=-1)
print(opened, refused, f"{open_s:.1f}", len(lat), failed, f"{pct(0.5):.1f}", f"{pct(0.99):.1f}",
      by15, len(closed_at), f"{last:.1f}", peak_rss, rss(),
      ",".join(f"{k}×{v}" for k, v in sorted(kinds.items())) or "none",
      f"{min(fail_t, default=-1):.1f}-{max(fail_t, default=-1):.1f}")
for s in socks:
    s.close()
PY
    local opened refused open_s ok_n failed p50 p99 by15 closed last peak now kinds span
    read -r opened refused open_s ok_n failed p50 p99 by15 closed last peak now kinds span <"$TMP/case8.out" || {
        cat "$TMP/case8.out" >&2
        verdict 8 0 "the measurement failed"
        return
    }
    local ok=1
    ((opened == SLOW && refused == 0)) || ok=0
    ((ok_n >= 100 && failed == 0)) || ok=0
    ((closed == opened)) || ok=0
    ((peak < 102400)) || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 8 "$ok" "$opened partial-header connections opened in ${open_s} s ($refused refused); normal requests during: ok $ok_n, failed $failed ($kinds, at ${span} s), p50 ${p50} ms, p99 ${p99} ms; partial ones closed by the server: $by15 within 15 s, $closed in all (last at ${last} s); RSS peak $((peak / 1024)) MB, after $((now / 1024)) MB"
}

# ---- case 9: large bodies with a wrong bearer token -----------------------------------------------
case_9() {
    fresh_relay
    local rss0
    rss0=$(rss_kib "$RELAY_PID")
    python3 - "$RELAY_PORT" "$RELAY_PID" >"$TMP/case9.out" 2>&1 <<'PY' || true
import collections, socket, sys, threading, time
port, pid = int(sys.argv[1]), sys.argv[2]
N, SIZE = 40, 25 * 1024 * 1024
chunk = b"x" * 65536
codes = collections.Counter()
lock = threading.Lock()
peak = [0]
sent_all = [0]

def rss():
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

def one():
    code = "000"
    s = socket.socket()
    s.settimeout(20)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall((f"POST /hooks/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer wrong-token\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {SIZE}\r\nConnection: close\r\n\r\n").encode())
        sent = 0
        try:
            while sent < SIZE:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed without reading the body
        with lock:
            sent_all[0] += sent
        data = b""
        try:
            while b"\r\n" not in data:
                more = s.recv(4096)
                if not more:
                    break
                data += more
        except OSError:
            pass
        if data.startswith(b"HTTP/1."):
            code = data.split()[1].decode()
    except OSError:
        pass
    finally:
        s.close()
    with lock:
        codes[code] += 1

done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.02)
sampler = threading.Thread(target=sample)
sampler.start()
t0 = time.monotonic()
threads = [threading.Thread(target=one) for _ in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
took = time.monotonic() - t0
time.sleep(1)
done.set()
sampler.join()
print(codes.get("401", 0), ",".join(f"{c}×{n}" for c, n in sorted(codes.items())), int(took * 1000), peak[0],
      sent_all[0] // (1024 * 1024))
PY
    local n401 codes took peak sent hwm after
    read -r n401 codes took peak sent <"$TMP/case9.out" || {
        cat "$TMP/case9.out" >&2
        verdict 9 0 "the measurement failed"
        return
    }
    hwm=$(hwm_kib "$RELAY_PID")
    after=$(rss_kib "$RELAY_PID")
    local ok=1
    ((n401 == 40)) || ok=0
    ((hwm < 102400)) || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 9 "$ok" "40 requests × 25 MB with a wrong token in ${took} ms (${sent} MB of body written before the server closed): $codes; RSS before $((rss0 / 1024)) MB, sampled peak $((peak / 1024)) MB, VmHWM $((hwm / 1024)) MB (< 100), after $((after / 1024)) MB"
}

# ---- case 1: the outbox refuses the `delivered` record ---------------------------------------------
# The message's sends at the stand-in (messages whose text holds alert $1's id).
sends_of() {
    curl -s --max-time 5 "$MOCK_URL/_messages" |
        python3 -c 'import json, sys
try: print(sum(1 for m in json.load(sys.stdin)["messages"] if sys.argv[1] in json.dumps(m, ensure_ascii=False)))
except Exception: print(-1)' "$1"
}
case_1() {
    fresh_relay
    local db=$TMP/state/outbox.sqlite3 first second
    python3 - "$db" <<'PY' || die "could not add the trigger"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.execute("CREATE TRIGGER full_disk BEFORE UPDATE OF state ON messages WHEN NEW.state = 'delivered' "
          "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;")
c.commit()
c.close()
PY
    first=$(post_many 0 0)
    local id0 id1
    id0=$(printf '%s-%04d' "$NAME" 0)
    id1=$(printf '%s-%04d' "$NAME" 1)
    nap 30
    local sends0 errors
    sends0=$(sends_of "$id0")
    errors=$(errors_logged)
    python3 - "$db" <<'PY' || die "could not drop the trigger"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.execute("DROP TRIGGER full_disk")
c.commit()
c.close()
PY
    second=$(post_many 1 1)
    local waited=0 sends1=0
    while ((waited < 30)); do
        sends1=$(sends_of "$id1")
        ((sends1 >= 1)) && break
        nap 1
        waited=$((waited + 1))
    done
    nap 2
    sends1=$(sends_of "$id1")
    local sends0_end
    sends0_end=$(sends_of "$id0")
    local ok=1
    [[ $first == "202×1" && $second == "202×1" ]] || ok=0
    ((sends0 == 1 && sends0_end == 1)) || ok=0
    ((sends1 == 1)) || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 1 "$ok" "record refused: alert 0 ($first) sent $sends0 time(s) in 30 s (ERROR lines: $errors); trigger dropped: alert 1 ($second) sent $sends1 time(s) within ${waited} s; alert 0 sent $sends0_end time(s) in all"
}

# ---- case 2: a crash during a send -----------------------------------------------------------------
# The msgUuid of the message the outbox records as in flight ("none" when there is none).
in_flight_uuid() {
    python3 - "$TMP/state/outbox.sqlite3" <<'PY'
import re, sqlite3, sys
try:
    c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
    rows = c.execute("SELECT message FROM in_flight").fetchall()
    found = [m.group(1) for (msg,) in rows for m in [re.search(r'"msgUuid"\s*:\s*"([^"]+)"', msg)] if m]
    print(found[0] if found else "none")
except Exception:
    print("none")
PY
}
# Whether the stand-in has seen a send.
# shellcheck disable=SC2317 # called through wait_for
mock_tried() { (($(mock_requests) >= 1)); }
case_2() {
    fresh_relay
    local i intake0 intake1 uuid
    for ((i = 0; i <= 30; i++)); do printf '%s-%04d\n' "$NAME" "$i"; done >"$TMP/ids2"
    fault hang
    intake0=$(post_many 0 0)
    wait_for 30 mock_tried || die "case 2: no send reached the hanging stand-in in 30 s"
    intake1=$(post_many 1 30)
    nap 1
    exec 3>&2 2>/dev/null # bash would report the killed job ("Killed") on stderr
    kill -KILL "$RELAY_PID"
    wait "$RELAY_PID" || true
    exec 2>&3 3>&-
    RELAY_PID=
    uuid=$(in_flight_uuid)
    fault none
    start_relay
    local t0=$SECONDS got=0 dup_alerts=0 dup_uuids=0 messages=0
    while ((SECONDS - t0 < 60)); do
        read -r got dup_alerts dup_uuids messages < <(delivery_report "$TMP/ids2") || true
        ((got >= 31)) && break
        nap 1
    done
    local took=$((SECONDS - t0))
    nap 3
    read -r got dup_alerts dup_uuids messages < <(delivery_report "$TMP/ids2") || true
    local first
    first=$(python3 -c 'import json, sys
try: print(json.load(open(sys.argv[1]))["messages"][0]["body"].get("msgUuid") or "none")
except Exception: print("none")' "$TMP/messages.json")
    local ok=1
    [[ $intake0 == "202×1" && $intake1 == "202×30" ]] || ok=0
    ((got == 31 && dup_alerts == 0 && dup_uuids == 0)) || ok=0
    [[ $uuid != none && $first == "$uuid" ]] || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 2 "$ok" "SIGKILL during a hanging send (intake $intake0, then $intake1); in flight: msgUuid $uuid; after the restart: first msgUuid $first, $got/31 alerts delivered in $messages message(s) within ${took} s, duplicates: $dup_alerts alert(s), $dup_uuids msgUuid(s)"
}

# ---- case 4: an outbox the daemon cannot write; a full disk ----------------------------------------
case_4() {
    # (a) Read-only at start: mode 0444, or, for root (who writes it anyway), mounted read-only
    # in a private mount namespace.
    fresh_relay
    stop "$RELAY_PID"
    RELAY_PID=
    local db=$TMP/state/outbox.sqlite3 rc=0 t0 took lines how=mode
    local wrap=()
    chmod 0444 "$db"
    if [[ -w $db ]]; then
        command -v unshare >/dev/null || die "case 4 as root needs util-linux's unshare"
        # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
        wrap=(unshare --user --map-root-user --mount sh -c
            'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"' sh "$db")
        how="read-only mount"
    fi
    t0=$(date +%s%N)
    timeout 20 "${wrap[@]}" "$BIN" serve --config "$TMP/rules.yaml" >"$TMP/case4a.log" 2>&1 || rc=$?
    took=$((($(date +%s%N) - t0) / 1000000))
    chmod 0644 "$db"
    lines=$(grep -c 'Cannot start' "$TMP/case4a.log" || true)
    local said=no
    grep 'Cannot start' "$TMP/case4a.log" | grep -q 'can only be read by this user' && said=yes

    # (b) A full disk: the state directory on a 2 MiB tmpfs in a private mount namespace, filled
    # from outside through /proc/PID/root.
    command -v unshare >/dev/null || die "case 4 needs util-linux's unshare"
    # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
    RELAY_WRAP=(unshare --user --map-root-user --mount sh -c
        'mount -t tmpfs -o size=2m tmpfs "$1" && shift && exec "$@"' sh "$TMP/state")
    fresh_relay
    RELAY_WRAP=()
    local view=/proc/$RELAY_PID/root$TMP/state answers=$TMP/case4.answers i
    : >"$answers"
    for ((i = 0; i < 5; i++)); do post_timed "$i" "$answers"; done
    local ready_before ready_full ready_after full_answers after_answers
    ready_before=$(status_of "$RELAY_URL/-/ready")
    dd if=/dev/zero of="$view/filler" bs=64k 2>/dev/null || true
    for ((i = 5; i < 25; i++)); do post_timed "$i" "$TMP/case4.full"; done
    full_answers=$(awk '{print $2}' "$TMP/case4.full" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=","}')
    ready_full=$(status_of "$RELAY_URL/-/ready")
    cat "$TMP/case4.full" >>"$answers"
    rm -f "$view/filler"
    # The senders retry what was not accepted, as Alertmanager does on 5xx.
    : >"$TMP/case4.retry"
    while read -r i code _; do
        [[ $code == 202 ]] || post_timed "$i" "$TMP/case4.retry"
    done <"$TMP/case4.full"
    after_answers=$(awk '{print $2}' "$TMP/case4.retry" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=","}')
    cat "$TMP/case4.retry" >>"$answers"
    ready_after=$(status_of "$RELAY_URL/-/ready")
    wait_delivered "$answers" 90 || true
    nap 2
    local report
    read -r -a report < <(answers_report "$answers")
    local ok=1
    ((rc == 1 && took <= 5000 && lines == 1)) && [[ $said == yes ]] || ok=0
    [[ $ready_before == 200 && $ready_full == 503 && $ready_after == 200 ]] || ok=0
    [[ $full_answers == *503* ]] || ok=0
    ((report[3] == 0 && report[4] == 0 && report[5] == 0 && report[1] == 25)) || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 4 "$ok" "read-only outbox ($how): exited $rc in ${took} ms, 'Cannot start' lines: $lines, says why: $said; full disk: /-/ready $ready_before, then full: webhooks ${full_answers}, /-/ready $ready_full; room again: retries ${after_answers:-none}, /-/ready $ready_after; accepted ${report[1]}/25, delivered ${report[2]}, lost ${report[3]}, duplicated ${report[4]}, delivered without a 202: ${report[5]}"
    [[ $ok == 1 ]] || sed 's/^/    read-only: /' "$TMP/case4a.log" | tail -3
}

# ---- case 5: a write lock held by another process ----------------------------------------------------
case_5() {
    fresh_relay "request_timeout: 2s"
    local db=$TMP/state/outbox.sqlite3 answers=$TMP/case5.answers i stored
    : >"$answers"
    rm -f "$TMP/case5.locked"
    # Another process holds the write lock for 8 s.
    python3 - "$db" "$TMP/case5.locked" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
c.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(8)
c.execute("ROLLBACK")
PY
    local holder=$!
    track "$holder"
    # shellcheck disable=SC2317 # called through wait_for
    locked() { [[ -e $TMP/case5.locked ]]; }
    wait_for 10 locked || die "case 5: could not take the write lock"
    # 12 webhooks, one every 0.5 s, during the hold.
    local posters=()
    for ((i = 0; i < 12; i++)); do
        post_timed "$i" "$answers" &
        posters+=($!)
        nap 0.5
    done
    wait "${posters[@]}" || true
    wait "$holder" || true
    nap 1
    stored=$(events_stored "$db")
    local first slowest
    first=$(awk '{print $2}' "$answers" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=","}')
    slowest=$(awk '{ if ($3 > m) m = $3 } END { printf "%.1f", m }' "$answers")
    local accepted_first
    accepted_first=$(awk '$2 == 202' "$answers" | wc -l)
    # The senders retry what was not accepted.
    : >"$TMP/case5.retry"
    while read -r i code _; do
        [[ $code == 202 ]] || post_timed "$i" "$TMP/case5.retry"
    done < <(sort -n "$answers")
    cat "$TMP/case5.retry" >>"$answers"
    wait_delivered "$answers" 90 || true
    nap 2
    local report
    read -r -a report < <(answers_report "$answers")
    local ok=1
    [[ $stored == "$accepted_first" ]] || ok=0
    [[ $first == *408* ]] || ok=0
    ((report[1] == 12 && report[3] == 0 && report[4] == 0 && report[5] == 0)) || ok=0
    alive "$RELAY_PID" || ok=0
    verdict 5 "$ok" "12 webhooks during an 8 s write lock (request_timeout 2 s): ${first} (slowest answer ${slowest} s); events stored: ${stored} = the 202s ${accepted_first}; after the retries: accepted ${report[1]}/12, delivered ${report[2]}, lost ${report[3]}, duplicated ${report[4]}, delivered without a 202: ${report[5]}"
}

t_all=$SECONDS
for c in $CASES; do
    t0=$SECONDS
    case $c in
        1) case_1 ;;
        2) case_2 ;;
        3) case_3 ;;
        4) case_4 ;;
        5) case_5 ;;
        6) case_6 ;;
        8) case_8 ;;
        9) case_9 ;;
        *) die "unknown case $c (known: 1 2 3 4 5 6 8 9)" ;;
    esac
    say "case $c took $((SECONDS - t0)) s"
done
stop "$RELAY_PID"
RELAY_PID=
if ((FAILED == 0)); then
    say "PASS: cases $CASES in $((SECONDS - t_all)) s"
    exit 0
fi
say "FAIL: $FAILED case(s) of $CASES failed ($((SECONDS - t_all)) s)"
exit 1
