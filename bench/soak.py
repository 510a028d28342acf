"""Soak: minutes of mixed, partly hostile traffic against one `kingpost serve`; every answer checked.

    python bench/soak.py --minutes 10          # the lead's run; --minutes 1 for a smoke run

Starts `python -m kingpost serve bench/bundles/soak` (production defaults, access log on, to a file)
and runs ``--clients`` threads until the time is up, each picking one of:

| kind | what it sends | what must come back |
|---|---|---|
| json | a JSON object with a unique tag and a few floats, on a keep-alive connection | 200, ``{"echo": <it>}`` |
| msgpack | the same as msgpack | 200, the same, as msgpack |
| stream | ``{"stream": n, "tag": t}`` | 200, chunked, exactly the n lines ``"t i\\n"`` |
| slow | a JSON request written in pieces 50 ms apart, on a fresh connection | 200, ``{"echo": <it>}`` |
| invalid | broken JSON, broken msgpack, text/plain, JSON nested 100 deep | 400, 400, 415, 400 with a JSON error |
| disconnect | half a request, or a whole one closed before the answer | nothing (the server must shrug) |

A valid request that fails (an exception, no answer) is *lost*; an answer with another status or
body is *wrong*. Both must be 0. It prints the counts, the server's RSS after a warm-up and at the
end (and its peak), and p50/p99 of the json and msgpack requests; exit status 1 if anything was lost
or wrong or the server died. Needs the dev venv (msgpack); stdlib otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import msgpack

BENCH = Path(__file__).resolve().parent
PREDICT = "/v1/models/model:predict"
KINDS = (("json", 40), ("msgpack", 20), ("stream", 12), ("slow", 5), ("invalid", 13), ("disconnect", 10))


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.wrong: Counter[str] = Counter()
        self.examples: list[str] = []
        self.latencies: list[float] = []

    def bad(self, which: Counter[str], kind: str, what: str) -> None:
        with self.lock:
            which[kind] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{kind}: {what}")


class Client:
    def __init__(self, host: str, port: int, tally: Tally, seed: int) -> None:
        self.host, self.port, self.tally = host, port, tally
        self.rng = random.Random(seed)
        self.conn: http.client.HTTPConnection | None = None
        self.n = 0

    def tag(self) -> str:
        self.n += 1
        return f"{threading.get_ident():x}-{self.n}"

    def keep_alive(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self, until: float) -> None:
        names, weights = zip(*KINDS, strict=True)
        while time.monotonic() < until:
            kind = self.rng.choices(names, weights)[0]
            self.tally.sent[kind] += 1
            try:
                getattr(self, kind)()
            except (OSError, http.client.HTTPException) as exc:
                self.drop()
                if kind != "disconnect":
                    self.tally.bad(self.tally.lost, kind, repr(exc))
        self.drop()

    # -- kinds ---------------------------------------------------------------------------------

    def _post(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        conn = self.keep_alive()
        conn.request("POST", PREDICT, body, {"Content-Type": content_type})
        answer = conn.getresponse()
        data = answer.read()
        if answer.will_close:
            self.drop()
        return answer.status, data

    def json(self) -> None:
        value = {"tag": self.tag(), "x": [self.rng.random() for _ in range(8)]}
        start = time.perf_counter()
        status, data = self._post(json.dumps(value).encode(), "application/json")
        self.tally.latencies.append(time.perf_counter() - start)
        if status != 200 or json.loads(data) != {"echo": value}:
            self.tally.bad(self.tally.wrong, "json", f"{status} {data[:200]!r}")

    def msgpack(self) -> None:
        value = {"tag": self.tag(), "x": [self.rng.random() for _ in range(8)], "b": os.urandom(16)}
        start = time.perf_counter()
        status, data = self._post(msgpack.packb(value), "application/msgpack")
        self.tally.latencies.append(time.perf_counter() - start)
        if status != 200 or msgpack.unpackb(data) != {"echo": value}:
            self.tally.bad(self.tally.wrong, "msgpack", f"{status} {data[:200]!r}")

    def stream(self) -> None:
        tag, n = self.tag(), self.rng.randint(2, 40)
        status, data = self._post(json.dumps({"stream": n, "tag": tag}).encode(), "application/json")
        expected = "".join(f"{tag} {i}\n" for i in range(n)).encode()
        if status != 200 or data != expected:
            self.tally.bad(self.tally.wrong, "stream", f"{status} {data[:200]!r}")

    def invalid(self) -> None:
        body, content_type, expected = self.rng.choice([
            (b'{"broken": ', "application/json", 400),
            (b"\xc1\xc1", "application/msgpack", 400),
            (b'{"a": 1}', "text/plain", 415),
            (b"[" * 100 + b"]" * 100, "application/json", 400),
        ])
        status, data = self._post(body, content_type)
        if status != expected or "error" not in json.loads(data):
            self.tally.bad(self.tally.wrong, "invalid", f"{status} for {body[:20]!r} {content_type}")

    def slow(self) -> None:
        value = {"tag": self.tag(), "slow": True}
        body = json.dumps(value).encode()
        request = (f"POST {PREDICT} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            step = max(1, len(request) // 4)
            for i in range(0, len(request), step):
                sock.sendall(request[i:i + step])
                time.sleep(0.05)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, payload = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or json.loads(payload) != {"echo": value}:
            self.tally.bad(self.tally.wrong, "slow", f"{data[:200]!r}")

    def disconnect(self) -> None:
        body = json.dumps({"tag": self.tag(), "pad": "x" * self.rng.randint(10, 50_000)}).encode()
        request = (f"POST {PREDICT} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            sock.sendall(request[: self.rng.randint(1, len(request))])
            if self.rng.random() < 0.5:  # reset rather than close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="how long the traffic runs (10)")
    p.add_argument("--clients", type=int, default=16, help="client threads (16)")
    p.add_argument("--bundle", type=Path, default=BENCH / "bundles" / "soak")
    p.add_argument("--python", default=sys.executable, help="the Python that runs `-m kingpost serve`")
    args = p.parse_args(argv)

    log = Path(tempfile.mkstemp(prefix="kingpost-soak-", suffix=".stderr")[1])
    with log.open("wb") as err:
        server = subprocess.Popen([args.python, "-m", "kingpost", "serve", str(args.bundle), "--host", "127.0.0.1",
                                   "--port", "0"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                  start_new_session=True)
    try:
        host, port = _wait_ready(server, log)
        tally = Tally()
        Client(host, port, tally, 0).json()  # warm-up
        time.sleep(2)
        rss_start = rss_kb(server.pid)
        until = time.monotonic() + args.minutes * 60
        threads = [threading.Thread(target=Client(host, port, tally, seed).run, args=(until,), daemon=True)
                   for seed in range(1, args.clients + 1)]
        print(f"soak: {args.clients} clients for {args.minutes:g} min against pid {server.pid} on port {port}",
              flush=True)
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.minutes * 60 + 120)
        time.sleep(1)
        alive = server.poll() is None
        rss_end, rss_peak = (rss_kb(server.pid), rss_kb(server.pid, "VmHWM")) if alive else (-1, -1)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    lost, wrong = sum(tally.lost.values()), sum(tally.wrong.values())
    total = sum(tally.sent.values())
    print(f"requests: {total} ({', '.join(f'{k} {v}' for k, v in sorted(tally.sent.items()))})")
    print(f"lost: {lost} {dict(tally.lost) or ''}")
    print(f"wrong: {wrong} {dict(tally.wrong) or ''}")
    for example in tally.examples:
        print(f"  {example}")
    print(f"server RSS: start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB, peak {rss_peak / 1024:.1f} MiB")
    lat = tally.latencies
    print(f"valid json/msgpack latency: p50 {percentile(lat, 0.5) * 1000:.2f} ms, "
          f"p99 {percentile(lat, 0.99) * 1000:.2f} ms over {len(lat)} requests")
    print(f"server exit status after SIGTERM: {server.returncode}; its stderr: {log}")
    return 0 if alive and lost == 0 and wrong == 0 and server.returncode == 0 else 1


def _wait_ready(server: subprocess.Popen[bytes], log: Path) -> tuple[str, int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}):\n{log.read_text()}")
        found = re.search(r"serving .+ on http://([^\s:]+):(\d+)", log.read_text(errors="replace"))
        if found:
            host, port = found[1], int(found[2])
            try:
                conn = http.client.HTTPConnection(host, port, timeout=5)
                conn.request("GET", "/v1/models/model")
                if conn.getresponse().status == 200:
                    return host, port
            except OSError:
                pass
        time.sleep(0.1)
    raise SystemExit("the server did not become ready within 120 s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
