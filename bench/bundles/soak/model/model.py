"""Soak: echo, or a stream of numbered lines when asked; what every answer must be is derivable.

{"stream": n, "tag": t} streams n lines "t i\n" (a short sleep between them); anything else comes back as
{"echo": <input>}.
"""

import time


class Model:
    def predict(self, model_input):
        if isinstance(model_input, dict) and "stream" in model_input:
            return self._lines(model_input["tag"], model_input["stream"])
        return {"echo": model_input}

    def _lines(self, tag, n):
        for i in range(n):
            if i:
                time.sleep(0.001)
            yield f"{tag} {i}\n"
