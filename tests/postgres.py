"""Start a throwaway PostgreSQL server for tests: initdb in a temporary directory, a free port,
its unix socket in that directory, trust authentication on loopback only.

PostgreSQL refuses to run as root, so as root the server runs as ``nobody`` (``runuser``), owning
its directory. Stopped by its PID (``pg_ctl stop`` on that data directory).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (Debian: /usr/lib/postgresql/<version>/bin), or None."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Postgres:
    def __init__(self, base: Path) -> None:
        bindir = binaries()
        assert bindir is not None
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.port = _free_port()
        self._as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self._as:
            base.chmod(0o755)
            os.chown(base, _uid("nobody"), -1)

    @property
    def url(self) -> str:
        return f"postgresql://kingpost@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self._as, *args], check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd=self.base)

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "kingpost", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=40 -c shared_buffers=16MB")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"),
                  "-w", "-t", "60", "start", timeout=90)
        deadline = time.monotonic() + 30
        while True:  # pg_ctl -w waits for the socket; make sure TCP answers too
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run([*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                        "stop"], timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.base,
                       check=False)


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid
