"""The child process of a ``docker_server`` bundle: started, watched, stopped by its process group.

The command runs with ``/bin/sh -c`` in the bundle directory (as Truss's image runs it from /app),
in a session of its own so that SIGTERM reaches whatever it started. Its output goes to the
server's own stdout/stderr. When it exits on its own, ``exit_reason`` says how, and the front door
turns that into failing readiness and liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from kingpost.custom_server import DockerServer

logger = logging.getLogger("kingpost.server")


class Child:
    def __init__(self, root: Path, spec: DockerServer, *, on_exit: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.spec = spec
        self.on_exit = on_exit
        self.process: asyncio.subprocess.Process | None = None
        self.exit_reason: str | None = None
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", self.spec.start_command, cwd=str(self.root), stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        logger.warning("started the custom server (pid %d): %s", self.process.pid, self.spec.start_command)
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        if self._stopping:
            return
        self.exit_reason = describe_exit(code)
        logger.error("the custom server (docker_server.start_command) %s; readiness now fails", self.exit_reason)
        if self.on_exit is not None:
            self.on_exit(self.exit_reason)

    async def stop(self, grace: float) -> None:
        """SIGTERM the child's process group, then SIGKILL it after ``grace`` seconds."""
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            logger.warning("the custom server did not stop within %g s of SIGTERM; killing it", grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"
