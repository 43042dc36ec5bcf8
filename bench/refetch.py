#!/usr/bin/env python3
# The cost of releasing a delivered document again: it goes out only after a fenced read
# shows the node still owns the shard (issue 10, I2), and this happens only on a repeated
# fetch (the first release is the `deliver` write itself). Starts a release `kofu serve`
# (embedded, or with `--redis` one node on a private redis-server), opens sessions, has
# each document delivered, then fetches it again REPEATS times, and reports the client's
# latency of first and repeated fetches and the node's `recheck` store-op time. Run it
# with an older binary (`KOFU_BIN=...`) to compare. A benchmark, not a test:
#   cargo build --release -p kofu-node && python3 bench/refetch.py [--redis] [SESSIONS] [REPEATS]
import base64, http.client, json, os, subprocess, sys, tempfile, time
from benchlib import wait_ready
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

args = [a for a in sys.argv[1:] if a != "--redis"]
REDIS = "--redis" in sys.argv
SESSIONS = int(args[0]) if args else 200
REPEATS = int(args[1]) if len(args) > 1 else 20
BIN = os.environ.get("KOFU_BIN", "target/release/kofu")
API, ADMIN, INTERNAL, RPORT = 18280, 19290, 17270, 16390
POP = ["--fixture-seed", "4", "--fixture-residents", str(SESSIONS + 200), "--fixture-kiosks", "10"]


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


fixtures = [json.loads(l) for l in subprocess.run([BIN, "fixtures", "--seed", "4", "--residents", str(SESSIONS + 200),
                                                   "--kiosks", "10"], capture_output=True, text=True,
                                                  check=True).stdout.splitlines()]
kiosk = next(f for f in fixtures if f["type"] == "kiosk")
cards = [f for f in fixtures if f["type"] == "card" and not f["card_revoked"] and not f["restricted"]][:SESSIONS]
procs, env = [], dict(os.environ)
tmp = tempfile.mkdtemp()
if REDIS:
    procs.append(subprocess.Popen(["redis-server", "--port", str(RPORT), "--save", "", "--appendonly", "no",
                                   "--dir", tmp], stdout=subprocess.DEVNULL))
    time.sleep(0.5)
    url = f"redis://127.0.0.1:{RPORT}/"
    subprocess.run([BIN, "registry", "load", "--redis", url, *POP[:4]],
                   check=True, capture_output=True)
    env.update(KOFU_REDIS_URL=url, KOFU_CLUSTER_SECRET="refetch-bench-secret-0123456789",
               KOFU_INTERNAL_LISTEN=f"127.0.0.1:{INTERNAL}", KOFU_NODE_ID="bench-node",
               # One node: no peer to link to, so no cluster CA is needed.
               KOFU_INSECURE_PLAINTEXT="true")
node = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{API}", "--admin-listen", f"127.0.0.1:{ADMIN}", *POP,
                         "--kiosk-rate", "0", "--kiosk-max-sessions", "0"],
                        env=env, stderr=subprocess.DEVNULL)
procs.append(node)
try:
    wait_ready(ADMIN)
    conn = http.client.HTTPConnection("127.0.0.1", API)
    auth = {"Authorization": "Bearer " + kiosk["token"], "Content-Type": "application/json"}

    def req(method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=auth)
        r = conn.getresponse()
        return r.status, r.read()

    first, again = [], []
    for card in cards:
        st, body = req("POST", "/v1/sessions", {"card_id": card["card_id"]})
        assert st == 201, (st, body)
        created = json.loads(body)
        sid = created["session_id"]
        msg = b"kofu-auth-v1\n" + sid.encode() + b"\n" + kiosk["kiosk_id"].encode() + b"\n" + b64d(created["challenge"])
        sig = Ed25519PrivateKey.from_private_bytes(b64d(card["secret_key"])).sign(msg)
        assert req("POST", f"/v1/sessions/{sid}/auth", {"signature": b64e(sig)})[0] == 200
        st, body = req("POST", f"/v1/sessions/{sid}/jobs", {"kind": "residence", "copies": 1})
        assert st == 202, (st, body)
        job = json.loads(body)["job_id"]
        path = f"/v1/sessions/{sid}/jobs/{job}/document?wait_ms=5000"
        t = time.perf_counter()
        st, doc = req("GET", path)
        first.append(time.perf_counter() - t)
        assert st == 200, st
        for _ in range(REPEATS):
            t = time.perf_counter()
            st, again_doc = req("GET", path)
            again.append(time.perf_counter() - t)
            assert st == 200 and again_doc == doc
        req("DELETE", f"/v1/sessions/{sid}")
    c = http.client.HTTPConnection("127.0.0.1", ADMIN)
    c.request("GET", "/metrics")
    metrics = c.getresponse().read().decode()
    rc = {k: float(v) for k, v in (l.rsplit(" ", 1) for l in metrics.splitlines()
                                    if 'op="recheck"' in l and ("_sum" in l or "_count" in l))}
    s = next((v for k, v in rc.items() if "_sum" in k), None)
    n = next((v for k, v in rc.items() if "_count" in k), None)
    med = lambda xs: sorted(xs)[len(xs) // 2] * 1e6
    print(f"{'redis' if REDIS else 'embedded'}: {len(first)} first fetches p50 {med(first):.0f} us; "
          f"{len(again)} repeated fetches p50 {med(again):.0f} us; "
          + (f"recheck mean {s / n * 1e6:.1f} us over {n:.0f}" if n else "no recheck measured (older binary)"))
finally:
    for p in reversed(procs):
        p.terminate()
        p.wait(timeout=60)
