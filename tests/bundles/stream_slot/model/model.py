"""A generator predict that streams more than a client's socket holds, under one predict slot.

Input: {"chunks": n, "size": bytes, "log": path (optional)}. Yields n chunks of `size` bytes; with
"log", writes how many chunks it has yielded so far (one number, overwritten) before each one and
"done <k>" when it ends, so a test sees how far predict ran ahead of a client that does not read.
"""


def _write(path, text):
    if path:
        with open(path, "w") as f:
            f.write(text)


class Model:
    def predict(self, model_input):
        n, size, log = model_input["chunks"], model_input["size"], model_input.get("log")
        chunk = b"x" * size
        sent = 0
        try:
            for _ in range(n):
                _write(log, str(sent))
                yield chunk
                sent += 1
        finally:
            _write(log, f"done {sent}")
