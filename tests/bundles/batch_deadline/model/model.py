"""Records every tag that reaches predict; an item marked slow makes its batch take 1 s."""

import time


class Model:
    def __init__(self):
        self.seen = []

    def predict(self, items):
        self.seen.extend(item["tag"] for item in items)
        if any(item.get("slow") for item in items):
            time.sleep(1.0)
        return [{"tag": item["tag"], "seen": list(self.seen)} for item in items]
