import json
from pathlib import Path


class Model:
    def load(self):
        self._config = json.loads(Path("/app/model_cache/kingpost-test-tiny/config.json").read_text())

    def predict(self, model_input):
        return {"label": self._config["labels"][model_input]}
