import hashlib
import json
from pathlib import Path

ROOT = Path("/app/model_cache/kingpost-test-lazy")


class Model:
    def __init__(self, **kwargs):
        self._lazy_data_resolver = kwargs["lazy_data_resolver"]
        self._ready_at_init = (ROOT / "weights.bin").exists()

    def load(self):
        self._lazy_data_resolver.block_until_download_complete()
        self._config = json.loads((ROOT / "config.json").read_text())
        self._digest = hashlib.sha256((ROOT / "weights.bin").read_bytes()).hexdigest()
        self._files = sorted(p.name for p in ROOT.iterdir())

    def predict(self, model_input):
        return {"scale": self._config["scale"] * model_input, "weights_sha256": self._digest,
                "files": self._files}
