"""Progress of long CLI work: a live line on a terminal (a real pty), plain lines anywhere else."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from conftest import bundle_path
from kingpost._progress import Progress

STEPS = ["kingpost: building environment for demo (python 3.11, 1 requirement)...",
         "kingpost:   installing numpy with uv",
         "kingpost:   still installing (10 s)...",
         "kingpost: environment ready in 12.0 s (/tmp/env)"]


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress(out) as echo:
        assert not echo.live
        for step in STEPS:
            echo(step)
    assert out.getvalue() == "".join(s + "\n" for s in STEPS)


def _read_all(fd: int, until: float) -> bytes:
    data = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        data += chunk
    return data


def _wide_pty() -> tuple[int, int]:
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # 200 columns: nothing cropped
    return main, side


def test_a_live_line_on_a_terminal() -> None:
    main, side = _wide_pty()
    with os.fdopen(side, "w", closefd=True) as terminal:
        with Progress(terminal) as echo:
            assert echo.live
            for step in STEPS:
                echo(step)
                time.sleep(0.15)  # the live line redraws on its own clock
        terminal.flush()
        shown = _read_all(main, time.monotonic() + 0.5).decode(errors="replace")
    os.close(main)
    assert "\x1b[" in shown  # the live line is drawn with terminal control sequences
    # Finished steps stay printed; the indented details only ever appear in the live line.
    assert "kingpost: building environment for demo (python 3.11, 1 requirement)..." in shown
    assert "kingpost: environment ready in 12.0 s (/tmp/env)" in shown
    assert "installing numpy with uv" in shown


def test_kingpost_context_on_a_terminal_and_in_a_pipe(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "kingpost", "context", str(bundle_path("echo"))]
    piped = subprocess.run([*command, str(tmp_path / "a")], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "TERM": "xterm"})
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == f"kingpost: writing the build context of {bundle_path('echo')} to {tmp_path / 'a'}\n"

    main, side = _wide_pty()
    proc = subprocess.Popen([*command, str(tmp_path / "b")], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=side, env={**os.environ, "TERM": "xterm"})
    os.close(side)
    shown = _read_all(main, time.monotonic() + 30)
    proc.wait(30)
    os.close(main)
    assert proc.returncode == 0
    assert b"\x1b[" in shown and b"writing the build context" in shown
    assert (tmp_path / "b" / "Dockerfile").is_file()


ENGINE = """#!/bin/sh
case "$1" in info) exit 0;; esac
echo "STEP 1/2: FROM debian"
sleep 0.2
echo "STEP 2/2: COPY . /srv"
sleep 0.2
exit {status}
"""


def _fake_docker(directory: Path, status: int) -> dict[str, str]:
    directory.mkdir()
    script = directory / "docker"
    script.write_text(ENGINE.format(status=status))
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{directory}{os.pathsep}{os.environ['PATH']}", "TERM": "xterm"}


def _on_pty(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    main, side = _wide_pty()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=side, env=env)
    os.close(side)
    shown = _read_all(main, time.monotonic() + 30)
    code = proc.wait(30)
    os.close(main)
    return code, shown.decode(errors="replace")


def test_an_image_build_on_a_terminal_and_in_a_pipe(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "kingpost", "image", str(bundle_path("context_app")), "-t", "demo:1",
               "--context-dir"]
    env = _fake_docker(tmp_path / "ok", 0)
    code, shown = _on_pty([*command, str(tmp_path / "ctx1")], env)
    assert code == 0, shown
    assert "kingpost: building demo:1 with docker" in shown and "STEP 2/2: COPY . /srv" in shown
    assert "kingpost:   STEP" not in shown  # the steps only moved the live line

    piped = subprocess.run([*command, str(tmp_path / "ctx2")], capture_output=True, text=True, env=env, timeout=60)
    assert piped.returncode == 0
    assert piped.stderr == "STEP 1/2: FROM debian\nSTEP 2/2: COPY . /srv\n"  # the engine's own lines, as before

    code, shown = _on_pty([*command, str(tmp_path / "ctx3")], _fake_docker(tmp_path / "bad", 3))
    assert code == 1
    # A failed build leaves its last lines on screen, then the one-line error.
    assert "kingpost:   STEP 1/2: FROM debian\r\nkingpost:   STEP 2/2: COPY . /srv" in shown
    assert "error: docker could not build the image (exit status 3)" in shown
