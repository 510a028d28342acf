"""The async generator twin of tests/bundles/stream_tokens (same input, same log)."""


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Model:
    async def predict(self, model_input):
        n, kind, log, every = model_input["chunks"], model_input["kind"], model_input["log"], model_input["every"]
        for i in range(n):
            if i % every == 0:
                _write(log, str(i))
            yield "tok. " if kind == "text" else {"token": i}
        _write(log, f"done {n}")
