import hashlib
from pathlib import Path

from constants.constants import TEST_KEY


class Model:
    def __init__(self, data_dir, **kwargs):
        self._data_dir = data_dir

    def predict(self, model_input):
        truss_path = Path("/app/data") / model_input["path"]
        return {
            "key": TEST_KEY,
            "sha256": hashlib.sha256((self._data_dir / model_input["path"]).read_bytes()).hexdigest(),
            "at_app_data": hashlib.sha256(truss_path.read_bytes()).hexdigest() if truss_path.exists() else None,
        }
