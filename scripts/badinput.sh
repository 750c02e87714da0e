#!/usr/bin/env bash
# Bad input, bounded: a few thousand generated requests to dingrelay on loopback, in random order
# and 16 at a time: malformed JSON, bodies over body_limit (64KiB here), unauthenticated requests,
# wrong content types, garbage bytes (as a body, and as the whole request), wrong methods and
# unknown paths, interleaved with valid Alertmanager webhooks. Checks that each gets the status it
# should (400/401/413/415/405/404; valid → 202), that every valid alert is delivered to the
# DingTalk stand-in, that the daemon keeps serving, that its RSS stays under a bound, and that
# nothing was logged at ERROR.
#
# Usage: scripts/badinput.sh            (from anywhere)
#
# Environment:
#   BADINPUT_REQUESTS     how many requests (default 3000, 100..20000); about 10% are valid
#   BADINPUT_CONCURRENCY  connections at once (default 16, 1..64)
#   BADINPUT_SEED         the generator's seed (default 6)
#   BADINPUT_RSS_MAX_MIB  the largest RSS allowed during the run (default 64)
#   BADINPUT_LIMIT        seconds to wait for the valid alerts' delivery (default 240, at most 900)
#   STORM_SKIP_BUILD, MOCK_DINGTALK, DINGRELAY_BIN: see scripts/lib.sh
#
# The requests are made by a small Python script (standard library only) over raw sockets, so
# it can send what curl will not (bytes that are not HTTP, a body larger than it declares). Every
# request has a 10 s timeout. Loopback only; everything started is stopped and the temporary
# directory removed on exit. Exit status: 0 PASS, 1 FAIL, 2 setup error. Last line: the verdict.

set -euo pipefail
NAME=badinput
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUESTS=${BADINPUT_REQUESTS:-3000}
CONCURRENCY=${BADINPUT_CONCURRENCY:-16}
SEED=${BADINPUT_SEED:-6}
RSS_MAX=${BADINPUT_RSS_MAX_MIB:-64}
LIMIT=${BADINPUT_LIMIT:-240}
check_int REQUESTS 100 20000
check_int CONCURRENCY 1 64
check_int SEED 0 4294967295
check_int RSS_MAX 8 4096
check_int LIMIT 1 900
BODY_LIMIT=65536

build_release
start_mock
write_config "body_limit: 64KiB"
start_relay

cat >"$TMP/badinput.py" <<'PY'
"""Generates and sends the bad-input requests; prints a JSON summary. Standard library only."""
import collections, concurrent.futures, json, random, select, socket, sys, threading, time

port, bearer, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
total, concurrency, seed = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
pid, limit, ids_path, out_path = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9], sys.argv[10]
rng = random.Random(seed)
HOOK = "/hooks/alertmanager"
AUTH = "Bearer " + bearer
valid_ids = []


refused_count = 0


def alert(padding=0, keep=True):
    """A valid Alertmanager payload for a new alert, of `padding` bytes when given (an annotation
    fills it). keep=False: for a request that must be refused (alertname MustNotArrive)."""
    global refused_count
    if keep:
        i = len(valid_ids)
        aid, alertname = "%s-%04d" % (name, i), "BadinputAlert"
        valid_ids.append(aid)
    else:
        refused_count += 1
        i = 100000 + refused_count
        aid, alertname = "refused-%d" % refused_count, "MustNotArrive"
    payload = {
        "receiver": "dingtalk", "status": "firing",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": alertname, "relay_id": aid, "instance": "node-%d:9100" % i},
                    "annotations": {"summary": "bad input run " + aid},
                    "startsAt": "2026-11-24T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://127.0.0.1/graph", "fingerprint": "%016x" % (0xBAD000 + i)}],
        "groupLabels": {"relay_id": aid}, "commonLabels": {"alertname": alertname, "relay_id": aid},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "version": "4",
        "groupKey": '{}:{relay_id="%s"}' % aid, "truncatedAlerts": 0,
    }
    body = json.dumps(payload).encode()
    if padding:
        payload["alerts"][0]["annotations"]["padding"] = ""
        base = len(json.dumps(payload).encode())
        payload["alerts"][0]["annotations"]["padding"] = "x" * (padding - base)
        body = json.dumps(payload).encode()
        assert len(body) == padding, (len(body), padding)
    return body


def bad_payload():
    """A JSON object that is not a valid Alertmanager payload (no new alert id)."""
    return json.dumps({"version": "4", "status": "firing", "receiver": "x"}).encode()


def case(category, expected, method="POST", path=HOOK, headers=None, body=b"", chunked=False, raw=None):
    return {"category": category, "expected": expected, "method": method, "path": path,
            "headers": headers if headers is not None else {}, "body": body, "chunked": chunked, "raw": raw}


def json_headers(**extra):
    h = {"Authorization": AUTH, "Content-Type": "application/json"}
    h.update(extra)
    return h


# ---- the generators, one per category --------------------------------------------------------
def valid():
    kind = rng.randrange(7)
    if kind == 5:  # the scheme name is case-insensitive
        return case("valid", [202], headers=json_headers(Authorization="bearer " + bearer), body=alert())
    if kind == 0:
        return case("valid", [202], headers={"Authorization": AUTH}, body=alert())  # no content type
    if kind == 1:
        return case("valid", [202], headers=json_headers(**{"Content-Type": "application/json; charset=utf-8"}), body=alert())
    if kind == 2:
        return case("valid", [202], headers=json_headers(**{"Content-Type": "application/vnd.alertmanager+json"}), body=alert())
    if kind == 3:
        return case("valid", [202], headers=json_headers(), body=b"\xef\xbb\xbf" + alert())  # UTF-8 BOM
    if kind == 4:
        return case("valid", [202], headers=json_headers(), body=alert(padding=limit))  # exactly body_limit
    return case("valid", [202], headers=json_headers(), body=alert(), chunked=rng.random() < 0.5)


def malformed():
    template = json.dumps({"version": "4", "status": "firing", "alerts": [{"labels": {"a": "b"}}]}).encode()
    choices = [
        lambda: template[: rng.randrange(1, len(template) - 1)],         # truncated
        lambda: template + rng.choice([b"x", b",", b"}", b" {}", b"\x00"]),  # trailing garbage
        lambda: rng.choice([b"[]", b'"4"', b"42", b"null", b"true", b"[{}]"]),  # not an object
        lambda: rng.choice([b"", b"   ", b"\n\t\r\n"]),                  # empty
        lambda: b'{"status":"firing","alerts":[]}',                        # no version
        lambda: b'{"version":"3","status":"firing","alerts":[]}',          # legacy version
        lambda: b'{"version":4,"status":"firing","alerts":[]}',            # version not a string
        lambda: b'{"version":"4","status":"firing","alerts":{}}',          # alerts not an array
        lambda: b'{"version":"4","status":"firing","alerts":[1,2]}',       # alerts not objects
        lambda: b'{"version":"4","status":"burning","alerts":[{}]}',       # bad status
        lambda: b'{"version":"4","alerts":[{}],"x":"\xff\xfe"}',           # invalid UTF-8
        lambda: b"[" * 5000 + b"]" * 5000,                                 # nesting beyond any limit
        lambda: b'{"version":"4","alerts":[{}],"n":1e999999}',             # number out of range
        lambda: b"{'version': '4'}",                                       # single quotes
        lambda: b'{"version":"4",}',                                       # trailing comma
    ]
    return case("malformed", [400], headers=json_headers(), body=rng.choice(choices)())


def oversized():
    size = rng.choice([limit + 1, limit + 1000, 2 * limit, 4 * limit])
    kind = rng.randrange(4)
    if kind == 0:
        return case("oversized", [413], headers=json_headers(), body=alert(padding=size, keep=False), chunked=False)
    if kind == 1:
        return case("oversized", [413], headers=json_headers(), body=alert(padding=size, keep=False), chunked=True)
    if kind == 2:  # over the limit and unauthenticated: the credentials (headers) are checked first
        return case("oversized", [401], headers={"Content-Type": "application/json"}, body=b"x" * size)
    # declares more than the limit, sends a little
    h = json_headers(**{"Content-Length": str(10**12)})
    return case("oversized", [413], headers=h, body=b"{}")


def unauthenticated():
    wrong = rng.choice([
        None, "Bearer wrong-token", "Bearer " + bearer + "x", "Bearer " + bearer[:-1], "Bearer ",
        "Basic " + "YWRtaW46YWRtaW4=", "Token " + bearer, bearer, "Bearer " + bearer.upper(),
    ])
    h = {"Content-Type": "application/json"}
    if wrong is not None:
        h["Authorization"] = wrong
    body = rng.choice([bad_payload(), b"not json", b"{}", b""]) if rng.random() < 0.3 else alert_no_id()
    if rng.random() < 0.2:
        h["Content-Type"] = "text/plain"  # authentication is checked before the content type
    return case("unauthenticated", [401], headers=h, body=body, path=HOOK + rng.choice(["", "?token=" + bearer]))


def alert_no_id():
    """A well-formed payload that must never be delivered (its requests are refused)."""
    return json.dumps({"version": "4", "status": "firing", "receiver": "x",
                       "alerts": [{"labels": {"alertname": "MustNotArrive", "relay_id": "refused"}}],
                       "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                       "externalURL": "", "groupKey": "{}:{}", "truncatedAlerts": 0}).encode()


def content_type():
    ct = rng.choice([
        "text/plain", "application/xml", "text/html", "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded", "application/octet-stream", "application/jsonx",
        "json", "text/json+", "application/json\xff",
    ])
    return case("content_type", [415], headers=json_headers(**{"Content-Type": ct}), body=alert_no_id())


def garbage():
    n = rng.choice([1, 7, 64, 512, 4096])
    body = bytes(rng.randrange(256) for _ in range(n))
    h = json_headers() if rng.random() < 0.5 else {"Authorization": AUTH}
    return case("garbage", [400], headers=h, body=body)


def raw_garbage():
    """Bytes that are not an HTTP request at all: a 400 from the HTTP layer, or the connection closed."""
    kind = rng.randrange(4)
    if kind == 0:
        raw = bytes(rng.randrange(256) for _ in range(rng.choice([16, 256, 2048])))
    elif kind == 1:
        raw = b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"
    elif kind == 2:
        # Authenticated, so that the bad chunk is what is refused (credentials come first).
        raw = (b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH.encode()
               + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    else:
        raw = b"HELLO / HTTP/9.9\r\n\r\n"
    return case("raw_garbage", [400, "closed"], raw=raw)


def method():
    m, path, expected = rng.choice([
        ("GET", HOOK, 405), ("PUT", HOOK, 405), ("DELETE", HOOK, 405), ("PATCH", HOOK, 405),
        ("OPTIONS", HOOK, 405), ("HEAD", HOOK, 405),
        ("POST", "/-/healthy", 405), ("POST", "/metrics", 405), ("GET", "/-/reload", 405),
    ])
    body = alert_no_id() if m in ("PUT", "PATCH", "POST") else b""
    return case("method", [expected], method=m, path=path, headers=json_headers(), body=body)


def unknown_path():
    path = rng.choice([
        "/", "/hooks", "/hooks/", "/hooks/nope", "/hooks/alertmanager/", "/HOOKS/alertmanager",
        "/hooks/alertmanager/extra", "/hooks/Alertmanager", "/hooks/../hooks/alertmanager",
        "/hooks/alertmanager%00", "/" + "a" * 4000, "/robot/send", "/-/unknown",
    ])
    m = rng.choice(["POST", "GET"])
    return case("unknown_path", [404], method=m, path=path, headers=json_headers(),
                body=alert_no_id() if m == "POST" else b"")


weights = [(valid, 10), (malformed, 15), (oversized, 8), (unauthenticated, 15), (content_type, 12),
           (garbage, 15), (raw_garbage, 3), (method, 11), (unknown_path, 11)]
gens = [g for g, w in weights for _ in range(w)]
cases = [rng.choice(gens)() for _ in range(total)]


# ---- a minimal HTTP/1.1 client over a raw socket ---------------------------------------------
def encode(c):
    if c["raw"] is not None:
        return c["raw"], b""
    body = c["body"]
    lines = ["%s %s HTTP/1.1" % (c["method"], c["path"]), "Host: 127.0.0.1:%d" % port, "Connection: close"]
    have_length = any(k.lower() == "content-length" for k in c["headers"])
    for k, v in c["headers"].items():
        lines.append("%s: %s" % (k, v))
    if c["chunked"]:
        lines.append("Transfer-Encoding: chunked")
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192]) for i in range(0, len(body), 8192))
        body = chunks + b"0\r\n\r\n"
    elif not have_length and (body or c["method"] in ("POST", "PUT", "PATCH")):
        lines.append("Content-Length: %d" % len(body))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")  # "\xff" goes out as the byte
    return head, body


def send(c):
    head, body = encode(c)
    started = time.monotonic()
    deadline = started + 10
    data, got = head + body, b""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        return "connect-error", None, 0.0
    with s:
        s.setblocking(False)
        sent, early = 0, False
        try:
            while sent < len(data):
                r, w, _ = select.select([s], [s], [], max(0.0, deadline - time.monotonic()))
                if r:
                    early = True  # the server answered before taking the whole body
                    break
                if not w:
                    return "timeout", None, time.monotonic() - started
                sent += s.send(data[sent:sent + 65536])
            if c["raw"] is not None:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            early = True
        try:
            while time.monotonic() < deadline:
                r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
                if not r:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
                if b"\r\n\r\n" in got:
                    headers, _, rest = got.partition(b"\r\n\r\n")
                    length = [int(l.split(b":", 1)[1]) for l in headers.split(b"\r\n")[1:]
                              if l.lower().startswith(b"content-length:")]
                    if c["method"] == "HEAD" or (length and len(rest) >= length[0]):
                        break
        except OSError:
            pass
    elapsed = time.monotonic() - started
    if not got:
        return ("closed" if time.monotonic() < deadline else "timeout"), None, elapsed
    try:
        status = int(got.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return "unparsable", None, elapsed
    headers, _, rest = got.partition(b"\r\n\r\n")
    try:
        jsonbody = isinstance(json.loads(rest), dict)
    except ValueError:
        jsonbody = False
    return status, jsonbody, elapsed


# ---- RSS sampler -----------------------------------------------------------------------------
def rss_kib():
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


rss_samples, stop = [], threading.Event()
def sampler():
    while not stop.is_set():
        rss_samples.append(rss_kib())
        stop.wait(0.05)


idle = rss_kib()
thread = threading.Thread(target=sampler, daemon=True)
thread.start()
t0 = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    results = list(pool.map(send, cases))
duration = time.monotonic() - t0
stop.set()
thread.join()
after = rss_kib()

by_status = collections.Counter()
by_category = collections.defaultdict(collections.Counter)
mismatches = collections.Counter()
examples = {}
not_json = collections.Counter()
slowest = 0.0
for c, (status, jsonbody, elapsed) in zip(cases, results):
    by_status[str(status)] += 1
    by_category[c["category"]][str(status)] += 1
    slowest = max(slowest, elapsed)
    if status not in c["expected"]:
        key = "%s: expected %s, got %s" % (c["category"], "/".join(map(str, c["expected"])), status)
        mismatches[key] += 1
        examples.setdefault(key, "%s %s %s body[:80]=%r" % (c["method"], c["path"][:60], {k: v for k, v in c["headers"].items() if k != "Authorization"}, (c["raw"] or c["body"])[:80]))
    if isinstance(status, int) and jsonbody is False and c["method"] != "HEAD":
        where = "raw bytes" if c["raw"] is not None else "%s %s" % (c["method"], c["path"][:40])
        not_json["%s to %s" % (status, where)] += 1
open(ids_path, "w").write("".join(i + "\n" for i in valid_ids))
json.dump({
    "requests": total, "seconds": round(duration, 1), "by_status": dict(sorted(by_status.items())),
    "by_category": {k: dict(sorted(v.items())) for k, v in sorted(by_category.items())},
    "mismatches": dict(mismatches), "examples": examples, "answers_without_json_body": dict(not_json),
    "valid": len(valid_ids), "slowest_s": round(slowest, 3),
    "rss_kib": {"idle_before": idle, "peak": max(rss_samples, default=idle), "after": after},
}, open(out_path, "w"), indent=1)
PY

# ---- run ------------------------------------------------------------------------------------------
say "sending $REQUESTS requests, $CONCURRENCY at a time, to $RELAY_URL (seed $SEED)"
timeout 600 python3 "$TMP/badinput.py" "$RELAY_PORT" "$BEARER" "$NAME" "$REQUESTS" "$CONCURRENCY" \
    "$SEED" "$RELAY_PID" "$BODY_LIMIT" "$TMP/ids" "$TMP/summary.json" ||
    die "the request generator failed or took longer than 600 s"
python3 - "$TMP/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"badinput: {s['requests']} requests in {s['seconds']} s; slowest answer {s['slowest_s']} s")
print("badinput: answers by status: " + ", ".join(f"{k}×{v}" for k, v in s["by_status"].items()))
for cat, counts in s["by_category"].items():
    print(f"badinput:   {cat:16} " + ", ".join(f"{k}×{v}" for k, v in counts.items()))
print(f"badinput: mismatches: {sum(s['mismatches'].values())}")
for key, n in s["mismatches"].items():
    print(f"badinput:   {n} × {key}; e.g. {s['examples'][key]}")
print("badinput: answers without a JSON object body: " + (", ".join(f"{n} × {k}" for k, n in sorted(s["answers_without_json_body"].items())) or "none"))
r = s["rss_kib"]
print(f"badinput: RSS idle {r['idle_before'] / 1024:.1f} MiB, peak {r['peak'] / 1024:.1f} MiB, after {r['after'] / 1024:.1f} MiB")
PY
valid=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["valid"])' "$TMP/summary.json")
mismatches=$(python3 -c 'import json, sys; print(sum(json.load(open(sys.argv[1]))["mismatches"].values()))' "$TMP/summary.json")
peak_kib=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["rss_kib"]["peak"])' "$TMP/summary.json")

# ---- still serving? every valid alert delivered? ------------------------------------------------
healthy=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$RELAY_URL/-/healthy" || true)
make_alert 9999
printf '%s-9999\n' "$NAME" >>"$TMP/ids"
final=$(post_alert 9999)
say "after the run: /-/healthy $healthy, one more valid alert $final"
want=$((valid + 1))
start=$SECONDS
got=0
dup_alerts=0
dup_uuids=0
messages=0
while :; do
    read -r got dup_alerts dup_uuids messages < <(delivery_report "$TMP/ids") || true
    ((got >= want)) && break
    alive "$RELAY_PID" || { say "dingrelay exited"; break; }
    ((SECONDS - start < LIMIT)) || { say "gave up after $LIMIT s"; break; }
    say "$got/$want valid alerts delivered"
    nap 5
done
refused_delivered=$(python3 -c 'import json, sys; print(sum("MustNotArrive" in json.dumps(m["body"]) for m in json.load(open(sys.argv[1]))["messages"]))' "$TMP/messages.json" 2>/dev/null || echo "?")
read -r max_in_window throttled requests mock_accepted errcodes < <(stats_report) || true
levels=$(log_levels)
errors=$(python3 - "$TMP/relay.log" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if rec.get("level") == "ERROR":
        n += 1
        if n <= 5:
            print("  ERROR: " + json.dumps(rec.get("fields"), ensure_ascii=False)[:300], file=sys.stderr)
print(n)
PY
)
say "dingrelay log: $levels"
running=yes
alive "$RELAY_PID" || running=no
rss_now=$(rss_kib "$RELAY_PID")

ok=1
((mismatches == 0)) || ok=0
[[ $healthy == 200 && $final == 202 && $running == yes ]] || ok=0
((got == want && dup_alerts == 0 && dup_uuids == 0)) || ok=0
[[ $refused_delivered == 0 ]] || ok=0
((peak_kib <= RSS_MAX * 1024)) || ok=0
((errors == 0)) || ok=0
((max_in_window <= RATE && throttled == 0)) || ok=0
verdict=FAIL
((ok)) && verdict=PASS
say "$verdict: $REQUESTS requests, $mismatches with an unexpected status; $got/$want valid alerts delivered in $messages message(s), $refused_delivered from refused requests; RSS peak $((peak_kib / 1024)) MiB (limit $RSS_MAX), $((rss_now / 1024)) MiB at the end; ERROR log lines: $errors; still serving: $running (/-/healthy $healthy); max_in_window=$max_in_window; errcodes=$errcodes"
((ok)) && exit 0 || exit 1
