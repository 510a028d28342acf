"""Real HTTP servers on loopback for download tests: plain files with Range, and the Hub's endpoints.

    with FileServer({"/w.bin": data}) as server:       # http.server on a free port, in a thread
        server.url + "/w.bin"
        server.ranges                                   # the Range headers it was sent
        server.hold_after["/w.bin"] = 1000              # send 1000 bytes, then stall until released

A :class:`HubServer` answers the two endpoints ``huggingface_hub`` calls for a repository:
``GET /api/models/<repo>/revision/<rev>?blobs=true`` (the file list with sizes, LFS sha256 and git
blob ids) and ``GET /<repo>/resolve/<commit>/<path>`` (the bytes, Range honoured).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

_RANGE = re.compile(r"bytes=(\d+)-$")


class FileServer:
    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.ranges: list[str | None] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.hold_after: dict[str, int] = {}
        self.release = threading.Event()
        self.served = threading.Event()  # set once a held file sent its first part
        self._server: ThreadingHTTPServer | None = None

    url = ""  # http://127.0.0.1:<port>, kept after stop() (to show that nothing answers there)

    def __enter__(self) -> FileServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                outer.handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        threading.Thread(target=self._server.serve_forever, name="fileserver", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def body(self, path: str) -> bytes | None:
        return self.files.get(path)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = unquote(urlparse(h.path).path)
        data = self.body(path)
        if data is None:
            self.answer(h, 404, b"not found")
            return
        self.send_file(h, path, data)

    @staticmethod
    def answer(h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "text/plain") -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def send_file(self, h: BaseHTTPRequestHandler, path: str, data: bytes) -> None:
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        asked = h.headers.get("Range")
        self.ranges.append(asked)
        start = 0
        match = _RANGE.match(asked or "")
        if match and h.headers.get("If-Range", etag) == etag:
            start = int(match.group(1))
        h.send_response(206 if start else 200)
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        hold = self.hold_after.get(path)
        if hold is not None and start < hold:
            h.wfile.write(data[start:hold])
            h.wfile.flush()
            self.served.set()
            self.release.wait(30)  # stall mid-body: the test kills the client now
            h.close_connection = True
            return
        h.wfile.write(data[start:])


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer(FileServer):
    """A Hugging Face Hub for a few repositories: {repo_id: {path: bytes}}; ``lfs`` names LFS paths."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, repos: dict[str, dict[str, bytes]], lfs: set[str] | None = None) -> None:
        super().__init__()
        self.repos = repos
        self.lfs = lfs if lfs is not None else {p for files in repos.values() for p in files if p.endswith(".bin")}
        self.corrupt: set[str] = set()  # paths served with one byte changed

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(h.path)
        path = unquote(parsed.path)
        api = re.match(r"^/api/models/(.+?)(?:/revision/([^/]+))?$", path)
        if api:
            repo = self.repos.get(api.group(1))
            if repo is None:
                self.answer(h, 404, json.dumps({"error": "Repository not found"}).encode(), "application/json")
                return
            self.answer(h, 200, json.dumps(self.info(api.group(1), repo)).encode(), "application/json")
            return
        resolve = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", path)
        if resolve and resolve.group(1) in self.repos and resolve.group(3) in self.repos[resolve.group(1)]:
            data = self.repos[resolve.group(1)][resolve.group(3)]
            if resolve.group(3) in self.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_file(h, path, data)
            return
        self.answer(h, 404, b"not found")

    def info(self, repo_id: str, files: dict[str, bytes]) -> dict[str, Any]:
        siblings = []
        for name, data in sorted(files.items()):
            entry: dict[str, Any] = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
            if name in self.lfs:
                entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 130}
            siblings.append(entry)
        return {"id": repo_id, "modelId": repo_id, "sha": self.COMMIT, "private": False, "siblings": siblings}


def chunks(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic, incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])

