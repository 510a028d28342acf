"""A custom model server of this bundle's own (what vLLM or TEI would be): predict, an
OpenAI-style streamed chat completion, and health. A stream stops after its first chunk until a
file named ``release`` appears in the working directory, so a test can see the first chunk arrive
through kingpost before the rest is even produced."""

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._json(200, {"healthy": True})
        elif self.path.startswith("/sha256/"):  # a file by its absolute path: what the bundle's weights hold
            import hashlib

            path = Path(self.path[len("/sha256"):])
            self._json(200, {"sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None})
        else:
            self._json(404, {"detail": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
        if self.path == "/slow":
            time.sleep(float(body))
            self._json(200, {"slept": body})
        elif self.path == "/predict":
            self._json(200, {"echo": body, "pid": os.getpid(), "via": self.headers.get("X-Test", "")})
        elif self.path == "/v1/chat/completions" and body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            words = body["messages"][-1]["content"].split()
            for i, word in enumerate(words):
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": word.upper()}, "finish_reason": None}]}
                self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                if i == 0:
                    deadline = time.monotonic() + 30
                    while not Path("release").exists() and time.monotonic() < deadline:
                        time.sleep(0.01)
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        else:
            self._json(404, {"detail": f"no route {self.path}"})

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
