import hashlib


class Model:
    def __init__(self, data_dir, **kwargs):
        self._data_dir = data_dir

    def predict(self, model_input):
        data = (self._data_dir / model_input["path"]).read_bytes()
        return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
