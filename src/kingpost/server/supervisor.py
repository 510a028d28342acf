"""Several worker processes on one listening socket, kept alive, and never outliving their supervisor.

- A worker that dies (killed, crashed, or ended because its predict was stuck) is restarted after
  a backoff that starts at ``BACKOFF_S`` and doubles up to ``BACKOFF_MAX_S`` (back to the start once
  a worker has lived ``STABLE_S``); the others keep serving meanwhile.
- A worker whose model fails to load exits with ``LOAD_FAILED``: that is not a crash a restart
  mends, so the supervisor stops the others and exits with it.
- On SIGTERM/SIGINT the supervisor closes its copy of the socket (so new clients are refused, not
  queued), forwards the signal and waits for every worker to drain.
- A worker asks the kernel for SIGTERM when its parent dies (Linux) and checks its parent twice a
  second (everywhere), so a supervisor killed with SIGKILL leaves no worker holding the port.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from kingpost import defaults

logger = logging.getLogger("kingpost.server")

LOAD_FAILED = 1
"""A worker's exit status when its model failed to load."""
STUCK = 3
"""A worker's exit status after its predict was stuck past runtime.limits.predict_stuck_s."""
BACKOFF_S, BACKOFF_MAX_S = defaults.WORKER_RESTART_BACKOFF_S
STABLE_S = 30.0


class Supervisor:
    """Run ``count`` workers of ``target(sock, *args)`` until signalled; :meth:`run` returns the exit status."""

    def __init__(self, sock: socket.socket, count: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.sock: socket.socket | None = sock
        self.count = count
        self.target = target
        self.args = args
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[BaseProcess | None] = [None] * count
        self._started = [0.0] * count
        self._backoff = [BACKOFF_S] * count
        self._restart_at: list[float | None] = [None] * count
        self._stopping = False
        self.restarts = 0

    def run(self) -> int:
        for slot in range(self.count):
            self._start(slot)
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        code = 0
        try:
            while True:
                live = [w for w in self._workers if w is not None and w.exitcode is None]
                if self._stopping and not live:
                    break
                for slot, worker in enumerate(self._workers):
                    if worker is not None and worker.exitcode is not None:
                        code = self._ended(slot, worker) or code
                    due = self._restart_at[slot]
                    if due is not None and not self._stopping and time.monotonic() >= due:
                        self._start(slot)
                if live:
                    live[0].join(timeout=0.1)
                else:
                    time.sleep(0.1)
            if code == 0:
                code = 0 if self._stopping else 1
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._close_socket()
        return code

    def _start(self, slot: int) -> None:
        assert self.sock is not None
        worker = self._ctx.Process(target=_worker, args=(self.target, os.getpid(), self.sock, *self.args),
                                   name=f"kingpost-worker-{slot}")
        worker.start()
        self._workers[slot] = worker
        self._started[slot] = time.monotonic()
        self._restart_at[slot] = None

    def _ended(self, slot: int, worker: BaseProcess) -> int:
        """A worker ended: schedule its restart, or stop everything. Returns an exit status or 0."""
        self._workers[slot] = None
        status = worker.exitcode
        assert status is not None
        if self._stopping:
            return status if status > 0 else 0
        if status == LOAD_FAILED:
            logger.error("worker %s could not load the model; stopping the others", worker.name)
            self._stop(signal.SIGTERM, None)
            return LOAD_FAILED
        lived = time.monotonic() - self._started[slot]
        if lived >= STABLE_S:
            self._backoff[slot] = BACKOFF_S
        delay = self._backoff[slot]
        self._backoff[slot] = min(delay * 2, BACKOFF_MAX_S)
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        logger.error("worker %s %s after %.1f s; restarting it in %g s while the others serve",
                     worker.name, how, lived, delay)
        self._restart_at[slot] = time.monotonic() + delay
        self.restarts += 1
        return 0

    def _stop(self, sig: int, frame: Any) -> None:
        self._stopping = True
        self._close_socket()  # new clients are refused at once, not queued where no one accepts
        for w in self._workers:
            if w is not None and w.pid is not None and w.exitcode is None:
                os.kill(w.pid, signal.SIGTERM)

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _worker(target: Callable[..., None], parent: int, *args: Any) -> None:
    follow_parent(parent)
    target(*args)


def follow_parent(parent: int) -> None:
    """End this process (SIGTERM: it drains) when ``parent`` is gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent:  # the parent died before the kernel was told
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="kingpost-parent-watch", daemon=True).start()
