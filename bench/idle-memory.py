#!/usr/bin/env python3
# Memory per open idle session: starts a release `kofu serve`, opens N sessions (one per
# card, create only), and reports the RSS growth per session. A benchmark, not a test:
#   cargo build --release -p kofu-node && python3 bench/idle-memory.py 100000
import http.client, json, os, subprocess, sys, time
from benchlib import rss_kib, wait_ready

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
BIN = os.environ.get("KOFU_BIN", "target/release/kofu")
RESIDENTS = str(N + N // 20 + 100)  # room for revoked cards, which cannot open sessions
API, ADMIN = 18080, 19090

lines = subprocess.run([BIN, "fixtures", "--seed", "3", "--residents", RESIDENTS, "--kiosks", "50"],
                       capture_output=True, text=True, check=True).stdout.splitlines()
fixtures = [json.loads(l) for l in lines]
kiosks = [f for f in fixtures if f["type"] == "kiosk"]
cards = [f for f in fixtures if f["type"] == "card" and not f["card_revoked"]][:N]
node = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{API}", "--admin-listen", f"127.0.0.1:{ADMIN}",
                         "--fixture-seed", "3", "--fixture-residents", RESIDENTS, "--fixture-kiosks", "50",
                         # N sessions from 50 kiosks: no per-kiosk limits in a benchmark
                         "--kiosk-rate", "0", "--kiosk-max-sessions", "0"],
                        stderr=subprocess.DEVNULL)
try:
    wait_ready(ADMIN)
    conn = http.client.HTTPConnection("127.0.0.1", API)
    before, opened = rss_kib(node.pid), 0
    for i, card in enumerate(cards):
        k = kiosks[i % len(kiosks)]
        conn.request("POST", "/v1/sessions", body=json.dumps({"card_id": card["card_id"]}),
                     headers={"Authorization": "Bearer " + k["token"], "Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        opened += r.status == 201
    time.sleep(1)
    after = rss_kib(node.pid)
    print(f"{opened} idle sessions open; RSS {before} KiB -> {after} KiB; "
          f"{(after - before) * 1024 / max(opened, 1):.0f} bytes per open idle session")
finally:
    node.terminate()
    node.wait(timeout=60)
