"""A custom model server that streams its predict answer (chunked), for kingpost's proxy in front.

POST /predict takes stream_doors_plain's input: {"chunks": [str, ...], "gates": [path, ...]} writes
each chunk as it is made, waiting for gates[i - 1] before chunk i >= 1; {"count": n, "size": k,
"log": path} writes n chunks of k bytes, and before each writes how many it has sent to the log
("done <n>" at the end), so a test sees how far the server got ahead of a client that reads nothing.
Each chunk is one write on the socket, which blocks while the socket's buffer is full. The chunks
are the stream_doors bundles' (tests/bundles/stream_doors_common/doors.py).
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stream_doors_common"))
from doors import chunks


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        body = b'{"healthy": true}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks(body):
            self._chunk(chunk.encode())
        self._chunk(b"")

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
