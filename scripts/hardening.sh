#!/usr/bin/env bash
# The process-level cases of issue 12 (docs/reliability.md), at real speed against the release
# binary, each on a fresh state directory and bounded in time (≤ ~60 s each):
#   case 3  the outbox file deleted while the daemon runs: webhooks 503, /-/ready 503, an ERROR
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
#   HARDENING_CASES   which cases, space-separated (default "3 6 8 9 1 2")
#   HARDENING_SLOW    partial-header connections of case 8 (default 1200)
#   STORM_SKIP_BUILD, MOCK_DINGTALK, DINGRELAY_BIN, CARGO_TARGET_DIR: see scripts/lib.sh
#
# Loopback only; everything started is stopped and the temporary directory removed on exit.
# Exit status: 0 all PASS, 1 some FAIL, 2 setup error.

set -euo pipefail
NAME=hardening
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=${HARDENING_CASES:-3 6 8 9 1 2}
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

# A fresh dingrelay on a fresh state directory, and a stand-in without faults or messages.
fresh_relay() {
    stop "$RELAY_PID"
    RELAY_PID=
    rm -rf "$TMP/state" "$TMP/alerts"
    : >"$TMP/relay.log"
    curl -sf -o /dev/null --max-time 5 -X POST "$MOCK_URL/_reset" || die "could not reset the stand-in"
    fault none
    write_config ""
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

t_all=$SECONDS
for c in $CASES; do
    t0=$SECONDS
    case $c in
        1) case_1 ;;
        2) case_2 ;;
        3) case_3 ;;
        6) case_6 ;;
        8) case_8 ;;
        9) case_9 ;;
        *) die "unknown case $c (known: 1 2 3 6 8 9)" ;;
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
