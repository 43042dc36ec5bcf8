# What the benchmark scripts share: waiting for a started `kofu serve` to be ready, and
# reading its resident memory. Imported from the scripts beside it (`python3 bench/x.py`
# puts this folder on the import path).
import http.client, time


def wait_ready(admin_port, tries=300):
    """Polls the admin port's /readyz until it answers 200 (up to 30 s by default)."""
    for _ in range(tries):
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)


def rss_kib(pid):
    """The process's resident set size in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
