"""Batched predict that drops one output whenever a batch holds an item marked bad."""


class Model:
    def predict(self, items):
        out = [item["value"] for item in items]
        if any(item.get("bad") for item in items):
            out.pop()
        return out
