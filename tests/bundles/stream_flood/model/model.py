"""A generator predict that would stream far more than a client reads: backpressure's probe.

Input: {"chunks": n, "size": bytes, "log": path}. Yields n chunks of `size` bytes; before each it
writes how many it has yielded so far to the log (one number, overwritten), and "closed <k>" once
the generator ends, however it ends, so a test sees how far predict ran ahead of its client.
"""


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Model:
    def predict(self, model_input):
        n, size, log = model_input["chunks"], model_input["size"], model_input["log"]
        chunk = b"x" * size
        sent = 0
        try:
            for _ in range(n):
                _write(log, str(sent))
                yield chunk
                sent += 1
        finally:
            _write(log, f"closed {sent}")
