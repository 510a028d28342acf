"""A sync generator predict of many small chunks: the stream's room counted in bytes, not chunks.

Input: {"chunks": n, "kind": "text" | "dict", "log": path, "every": k}. Yields n chunks, each the
5-character text "tok. " or a small dict; every k chunks (and at the end, as "done n") it writes
how many it has yielded to the log, so a test sees how far predict ran ahead of its reader.
"""


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Model:
    def predict(self, model_input):
        n, kind, log, every = model_input["chunks"], model_input["kind"], model_input["log"], model_input["every"]
        for i in range(n):
            if i % every == 0:
                _write(log, str(i))
            yield "tok. " if kind == "text" else {"token": i}
        _write(log, f"done {n}")
