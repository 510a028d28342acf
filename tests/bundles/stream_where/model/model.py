"""A generator predict that says where each chunk was made (the loop's thread or a predict thread).

Input: {"chunks": n, "pad": bytes (optional), "slow_at": i, "slow_s": s, "fail_at": i, "log": path
(all optional)}. Yields n text chunks "<i> <thread name> <pad spaces>\\n"; sleeps slow_s before
chunk slow_at (an index or a list of them); raises ValueError instead of chunk fail_at. With "log",
keeps "<k> <thread name>" (k chunks yielded so far) in that file before each chunk and "done <k>"
once the generator ends, closed or not (one pwrite on a file opened once: a few µs, so the chunks
stay fast).
"""

import os
import threading
import time


class _Log:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if path else None

    def write(self, text):
        if self.fd is not None:
            os.pwrite(self.fd, text.ljust(64).encode(), 0)

    def close(self, text):
        if self.fd is not None:
            self.write(text)
            os.close(self.fd)


class Model:
    def predict(self, model_input):
        n = model_input["chunks"]
        pad = " " * model_input.get("pad", 0)
        slow_at, fail_at = model_input.get("slow_at"), model_input.get("fail_at")
        slow_at = set(slow_at) if isinstance(slow_at, list) else {slow_at}
        log = _Log(model_input.get("log"))
        sent = 0
        try:
            for i in range(n):
                if i in slow_at:
                    time.sleep(model_input["slow_s"])
                if i == fail_at:
                    raise ValueError(f"chunk {i} failed")
                name = threading.current_thread().name
                log.write(f"{sent} {name}")
                yield f"{i} {name} {pad}\n"
                sent += 1
        finally:
            log.close(f"done {sent}")
