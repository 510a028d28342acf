"""Server processes: start pinned to a core, wait until ready, account CPU, stop the whole group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .servers import Launch

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from "state" on; comm may hold spaces


def tree_cpu_seconds(root: int) -> float:
    """utime+stime of root and every live descendant, plus the children they have reaped."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if (fields := stats.get(pid)) is not None:
            # utime, stime, cutime, cstime are fields 14-17 (1-based), i.e. 11-14 here.
            total += sum(int(x) for x in fields[11:15])
            todo.extend(children.get(pid, ()))
    return total / CLK_TCK


def core_busy_seconds(core: int) -> float:
    """user + nice + system time of one core since boot, from /proc/stat (irq time left out: the
    kernel's loopback work for the server's own sockets lands there, charged to no process)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                ticks = [int(x) for x in line.split()[1:]]
                return sum(ticks[:3]) / CLK_TCK
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def pinned(cores: int | str, nice: int = 0) -> list[str]:
    """Command prefix that runs a command (and its children) on one core (or a taskset -c list such
    as "0,1"), at a nice level."""
    return ["taskset", "-c", str(cores)] + (["nice", "-n", str(nice)] if nice else [])


def core_list(cores: str) -> list[int]:
    """ "0,2-3" -> [0, 2, 3] (taskset -c syntax)."""
    out: list[int] = []
    for part in cores.split(","):
        first, _, last = part.strip().partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


class ServerProcess:
    """One server in its own session (so stop() reaches every child), started under prefix."""

    def __init__(self, name: str, launch: Launch, log_path: Path, prefix: list[str]) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **launch.env}
        env.pop("VIRTUAL_ENV", None)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*prefix, *launch.argv],
                cwd=launch.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def wait_ready(self, url: str, timeout: float) -> None:
        """Poll url until it answers 200; raise RuntimeError if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"not ready at {url} after {timeout:.0f} s:\n{self.log_tail()}")

    def pause(self) -> None:
        """SIGSTOP the whole group, so an idle server cannot take CPU from the one measured."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.resume()
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        # Children (LitServe's workers, uvicorn's) may outlive the leader: clear the session.
        self._signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def post_json(url: str, payload: Any, timeout: float = 30, headers: dict[str, str] | None = None,
              text: bool = False) -> Any:
    """The answer to a JSON POST, parsed; with ``text``, the body as text (a streamed answer joined)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
        return body.decode() if text else json.loads(body)


class FirstChunkProbe:
    """Times from sending a request to receiving the first byte of its body, on one keep-alive
    connection, one request at a time. The answer must be chunked."""

    def __init__(self, url: str, payload: Any, headers: dict[str, str], timeout: float = 10) -> None:
        parsed = urllib.parse.urlsplit(url)
        body = json.dumps(payload).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.request = (f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}\r\n"
                        f"Content-Type: application/json\r\n{head}Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def one(self) -> float:
        """One request's time to its first body byte, in ms (the whole answer is read)."""
        sock = self.sock
        t0 = time.perf_counter()
        sock.sendall(self.request)
        data = b""
        first = None
        while first is None or not data.endswith(b"0\r\n\r\n"):
            part = sock.recv(65536)
            if not part:
                raise RuntimeError("the server closed the connection mid-answer")
            data += part
            if first is None:
                end = data.find(b"\r\n\r\n")
                if end >= 0 and len(data) > end + 4:
                    first = time.perf_counter() - t0
        if b"transfer-encoding: chunked" not in data[: data.find(b"\r\n\r\n")].lower():
            raise RuntimeError("the answer is not chunked")
        return first * 1000

    def close(self) -> None:
        self.sock.close()
